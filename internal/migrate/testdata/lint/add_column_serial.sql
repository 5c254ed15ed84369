-- want: volatile-default
-- phase: expand
-- ref: squawk adding-serial-primary-key-field; strong_migrations adding an auto-incrementing column

ALTER TABLE items ADD COLUMN seq bigserial;
