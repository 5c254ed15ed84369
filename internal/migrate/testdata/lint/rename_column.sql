-- want: rename-column
-- phase: expand
-- ref: squawk renaming-column; strong_migrations renaming a column

ALTER TABLE items RENAME COLUMN title TO name;
