-- want: add-primary-key
-- phase: expand
-- ref: strong_migrations adding a primary key; squawk disallowed-unique-constraint

ALTER TABLE things ADD PRIMARY KEY (id);
