-- want: none
-- phase: expand
-- ref: dropping an index changes no query; CONCURRENTLY takes no blocking lock

DROP INDEX CONCURRENTLY IF EXISTS items_old_idx;
