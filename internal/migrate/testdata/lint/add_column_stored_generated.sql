-- want: add-column-generated
-- phase: expand
-- ref: strong_migrations adding a stored generated column

ALTER TABLE items ADD COLUMN title_lower text GENERATED ALWAYS AS (lower(title)) STORED;
