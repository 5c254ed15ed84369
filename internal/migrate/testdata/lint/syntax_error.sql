-- want: syntax
-- phase: expand
-- ref: Postgres's grammar rejects it

ALTER TABLE items ADD COLUMN;
