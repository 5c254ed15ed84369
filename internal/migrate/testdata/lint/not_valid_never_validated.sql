-- want: set-not-null
-- ref: a NOT VALID check in expand that is never validated does not make SET NOT NULL cheap

-- handoff:expand
ALTER TABLE items ADD CONSTRAINT items_t_nn CHECK (title IS NOT NULL) NOT VALID;
-- handoff:contract
ALTER TABLE items ALTER COLUMN title SET NOT NULL;
