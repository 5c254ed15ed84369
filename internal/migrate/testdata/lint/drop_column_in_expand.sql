-- want: drop-in-expand
-- phase: expand
-- ref: squawk ban-drop-column; strong_migrations removing a column

ALTER TABLE items DROP COLUMN legacy_title;
