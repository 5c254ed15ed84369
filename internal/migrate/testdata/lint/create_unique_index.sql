-- want: create-index
-- phase: expand
-- ref: squawk require-concurrent-index-creation

CREATE UNIQUE INDEX items_slug ON items (slug);
