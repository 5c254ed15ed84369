-- want: add-primary-key
-- phase: expand
-- ref: squawk adding-serial-primary-key-field

ALTER TABLE things ADD COLUMN id bigint PRIMARY KEY;
