-- want: drop-index
-- phase: contract
-- ref: squawk require-concurrent-index-deletion

DROP INDEX IF EXISTS items_title;
