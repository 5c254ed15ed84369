-- want: none
-- phase: expand
-- ref: strong_migrations: varchar to text is safe

ALTER TABLE items ALTER COLUMN title TYPE text;
