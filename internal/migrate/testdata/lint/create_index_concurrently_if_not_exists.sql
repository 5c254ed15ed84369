-- want: none
-- phase: expand
-- ref: safe form

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS items_slug ON items (slug) WHERE deleted_at IS NULL;
