-- want: add-column-references
-- phase: expand
-- ref: squawk adding-foreign-key-constraint; strong_migrations adding a reference

ALTER TABLE items ADD COLUMN owner_id bigint REFERENCES owners (id);
