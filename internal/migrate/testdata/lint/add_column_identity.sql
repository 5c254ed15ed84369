-- want: add-column-identity
-- phase: expand
-- ref: strong_migrations adding an auto-incrementing column

ALTER TABLE items ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
