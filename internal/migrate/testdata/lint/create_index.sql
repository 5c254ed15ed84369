-- want: create-index
-- phase: expand
-- ref: squawk require-concurrent-index-creation; strong_migrations adding an index non-concurrently

CREATE INDEX items_title ON items (title);
