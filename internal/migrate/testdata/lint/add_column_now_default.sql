-- want: none
-- phase: expand
-- ref: now() is stable, not volatile: no rewrite

ALTER TABLE items ADD COLUMN added_at timestamptz DEFAULT now();
