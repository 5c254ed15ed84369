-- want: none
-- phase: expand
-- ref: a new table: identity and references are free

CREATE TABLE owners (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, item_id bigint REFERENCES items (id), props jsonb);
