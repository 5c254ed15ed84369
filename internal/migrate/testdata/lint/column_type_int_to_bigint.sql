-- want: column-type
-- phase: expand
-- ref: squawk changing-column-type; strong_migrations changing the type of a column

ALTER TABLE items ALTER COLUMN score TYPE bigint;
