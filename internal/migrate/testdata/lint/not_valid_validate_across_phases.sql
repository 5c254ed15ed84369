-- want: none
-- ref: safe form across phases: NOT VALID in expand, VALIDATE and SET NOT NULL in contract

-- handoff:expand
ALTER TABLE items ADD CONSTRAINT items_t_nn CHECK (title IS NOT NULL) NOT VALID;
-- handoff:contract
ALTER TABLE items VALIDATE CONSTRAINT items_t_nn;
ALTER TABLE items ALTER COLUMN title SET NOT NULL;
ALTER TABLE items DROP CONSTRAINT items_t_nn;
