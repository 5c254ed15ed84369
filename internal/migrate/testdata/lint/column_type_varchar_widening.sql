-- want: none
-- phase: expand
-- ref: strong_migrations: increasing a varchar's length is safe

ALTER TABLE items ALTER COLUMN title TYPE varchar(500);
