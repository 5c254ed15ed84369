-- want: none
-- phase: expand
-- ref: safe form

CREATE UNIQUE INDEX CONCURRENTLY items_slug_key ON items (slug);
ALTER TABLE items ADD CONSTRAINT items_slug_key UNIQUE USING INDEX items_slug_key;
