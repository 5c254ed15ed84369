-- want: add-constraint
-- phase: expand
-- ref: squawk adding-foreign-key-constraint; strong_migrations adding a foreign key

ALTER TABLE items ADD CONSTRAINT items_owner_fk FOREIGN KEY (owner_id) REFERENCES owners (id);
