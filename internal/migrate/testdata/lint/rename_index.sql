-- want: none
-- phase: expand
-- ref: renaming an index changes no query

ALTER INDEX items_title RENAME TO items_title_idx;
