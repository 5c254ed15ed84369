-- want: create-index, set-not-null
-- phase: contract
-- ref: each statement is judged

CREATE INDEX items_a ON items (a);
ALTER TABLE items ALTER COLUMN a SET NOT NULL;
