-- want: set-logged
-- phase: expand
-- ref: Postgres: SET LOGGED rewrites the table

ALTER TABLE items SET LOGGED;
