-- want: add-unique
-- phase: expand
-- ref: squawk disallowed-unique-constraint; strong_migrations adding a unique constraint

ALTER TABLE items ADD CONSTRAINT items_slug_key UNIQUE (slug);
