-- want: none
-- phase: expand
-- ref: a table created earlier in the same phase

CREATE TABLE owners (id bigint PRIMARY KEY);
ALTER TABLE owners ADD COLUMN name text NOT NULL;
ALTER TABLE owners ADD COLUMN token uuid DEFAULT gen_random_uuid();
