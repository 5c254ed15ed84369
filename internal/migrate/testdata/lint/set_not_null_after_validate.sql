-- want: none
-- phase: contract
-- ref: safe form: a validated CHECK (col IS NOT NULL) first

ALTER TABLE items ADD CONSTRAINT items_title_nn CHECK (title IS NOT NULL) NOT VALID;
ALTER TABLE items VALIDATE CONSTRAINT items_title_nn;
ALTER TABLE items ALTER COLUMN title SET NOT NULL;
ALTER TABLE items DROP CONSTRAINT items_title_nn;
