-- want: none
-- phase: expand
-- ref: safe form

REINDEX INDEX CONCURRENTLY items_title;
