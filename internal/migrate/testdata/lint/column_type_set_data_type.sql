-- want: column-type
-- phase: expand
-- ref: squawk changing-column-type

ALTER TABLE items ALTER COLUMN score SET DATA TYPE numeric(12,2);
