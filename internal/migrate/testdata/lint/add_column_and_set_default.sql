-- want: none
-- phase: expand
-- ref: the lint's own safe form: add without default, SET DEFAULT for new rows

ALTER TABLE items ADD COLUMN token uuid, ALTER COLUMN token SET DEFAULT gen_random_uuid();
