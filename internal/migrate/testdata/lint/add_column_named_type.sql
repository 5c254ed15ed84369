-- want: none
-- phase: expand
-- ref: a column named type is not a type change

ALTER TABLE items ADD COLUMN type text;
