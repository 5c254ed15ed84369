-- want: none
-- phase: expand
-- ref: safe: catalog only

ALTER TABLE items ALTER COLUMN title DROP NOT NULL;
