-- want: add-column-not-null, add-constraint
-- phase: expand
-- ref: each command is judged

ALTER TABLE items ADD COLUMN a int NOT NULL, ADD COLUMN b int, ADD CONSTRAINT items_b_ck CHECK (b > 0);
