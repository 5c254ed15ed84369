-- want: rename-table
-- phase: expand
-- ref: squawk renaming-table; strong_migrations renaming a table

ALTER TABLE items RENAME TO products;
