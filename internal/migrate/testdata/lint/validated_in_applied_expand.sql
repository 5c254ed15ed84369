-- want: none
-- ref: a constraint validated by an applied expand still counts in contract
-- applied: expand

-- handoff:expand
ALTER TABLE items ADD CONSTRAINT items_t_nn CHECK (title IS NOT NULL) NOT VALID;
ALTER TABLE items VALIDATE CONSTRAINT items_t_nn;
-- handoff:contract
ALTER TABLE items ALTER COLUMN title SET NOT NULL;
