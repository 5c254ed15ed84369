-- want: add-column-not-null
-- phase: expand
-- ref: squawk adding-required-field / adding-not-nullable-field

ALTER TABLE items ADD COLUMN owner_id bigint NOT NULL;
