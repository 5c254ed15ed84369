-- want: whole-table-update
-- phase: expand
-- ref: a whole-table UPDATE holds SQLite's write lock
-- dialect: sqlite

UPDATE items SET title_lower = lower(title);
