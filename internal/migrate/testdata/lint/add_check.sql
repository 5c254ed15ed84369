-- want: add-constraint
-- phase: expand
-- ref: squawk constraint-missing-not-valid; strong_migrations adding a check constraint

ALTER TABLE items ADD CONSTRAINT items_score_ck CHECK (score >= 0);
