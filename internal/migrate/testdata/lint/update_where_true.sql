-- want: whole-table-update
-- phase: expand
-- ref: a WHERE that is always true

UPDATE items SET title_lower = lower(title) WHERE true;
