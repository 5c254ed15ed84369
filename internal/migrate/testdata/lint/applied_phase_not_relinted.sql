-- want: none
-- ref: expand has run: it is not linted again
-- applied: expand

-- handoff:expand
CREATE INDEX items_title ON items (title);
-- handoff:contract
ALTER TABLE items DROP COLUMN legacy;
