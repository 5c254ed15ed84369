-- want: none
-- phase: expand
-- ref: safe form (option list)

REINDEX (CONCURRENTLY, VERBOSE) TABLE items;
