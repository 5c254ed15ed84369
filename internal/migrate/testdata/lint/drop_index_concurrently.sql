-- want: none
-- phase: contract
-- ref: safe form

DROP INDEX CONCURRENTLY IF EXISTS items_title;
