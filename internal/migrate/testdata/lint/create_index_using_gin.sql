-- want: create-index
-- phase: expand
-- ref: squawk require-concurrent-index-creation

CREATE INDEX items_tags ON items USING gin (tags);
