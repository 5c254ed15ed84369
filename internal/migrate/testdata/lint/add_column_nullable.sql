-- want: none
-- phase: expand
-- ref: safe: adding a nullable column is instant

ALTER TABLE items ADD COLUMN summary text;
