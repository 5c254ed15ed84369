-- want: drop-in-expand
-- phase: expand
-- ref: squawk ban-drop-table; strong_migrations dropping a table

DROP TABLE legacy_items;
