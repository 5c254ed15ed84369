-- want: add-unique
-- phase: expand
-- ref: squawk disallowed-unique-constraint

ALTER TABLE items ADD COLUMN code text UNIQUE;
