-- want: none
-- phase: expand
-- ref: safe form: NOT VALID, then VALIDATE

ALTER TABLE items ADD CONSTRAINT items_score_ck CHECK (score >= 0) NOT VALID;
ALTER TABLE items VALIDATE CONSTRAINT items_score_ck;
