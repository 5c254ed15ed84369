-- want: rename-column
-- phase: contract
-- ref: a rename breaks a release in any phase

ALTER TABLE items RENAME title TO name;
