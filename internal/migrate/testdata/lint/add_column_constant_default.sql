-- want: none
-- phase: expand
-- ref: safe since Postgres 11: a constant default is stored in the catalog

ALTER TABLE items ADD COLUMN status text NOT NULL DEFAULT 'new';
