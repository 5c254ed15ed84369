-- want: add-column-check
-- phase: expand
-- ref: squawk constraint-missing-not-valid; strong_migrations adding a check constraint

ALTER TABLE items ADD COLUMN score int CHECK (score >= 0);
