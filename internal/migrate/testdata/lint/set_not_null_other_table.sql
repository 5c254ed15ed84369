-- want: set-not-null
-- phase: contract
-- ref: a VALIDATE on another table does not count

ALTER TABLE owners ADD CONSTRAINT owners_name_nn CHECK (name IS NOT NULL) NOT VALID;
ALTER TABLE owners VALIDATE CONSTRAINT owners_name_nn;
ALTER TABLE items ALTER COLUMN title SET NOT NULL;
