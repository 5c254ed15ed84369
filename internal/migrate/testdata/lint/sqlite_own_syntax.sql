-- want: none
-- phase: expand
-- ref: SQLite syntax Postgres's grammar rejects is left to SQLite's parser
-- dialect: sqlite

CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT);
