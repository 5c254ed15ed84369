-- want: json-column
-- phase: expand
-- ref: strong_migrations adding a json column

ALTER TABLE items ADD COLUMN props json;
