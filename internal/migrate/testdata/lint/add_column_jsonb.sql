-- want: none
-- phase: expand
-- ref: safe form

ALTER TABLE items ADD COLUMN props jsonb;
