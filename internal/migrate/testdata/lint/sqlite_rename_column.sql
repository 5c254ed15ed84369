-- want: rename-column
-- phase: contract
-- ref: a rename breaks the running release on any database
-- dialect: sqlite

ALTER TABLE items RENAME COLUMN title TO name;
