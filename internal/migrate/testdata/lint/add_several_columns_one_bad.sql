-- want: volatile-default
-- phase: expand
-- ref: one ALTER, one bad command among safe ones

ALTER TABLE items ADD COLUMN a text, ADD COLUMN b int DEFAULT 0, ADD COLUMN c uuid DEFAULT gen_random_uuid();
