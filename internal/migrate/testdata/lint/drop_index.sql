-- want: drop-index
-- phase: contract
-- ref: squawk require-concurrent-index-deletion

DROP INDEX items_title;
