-- want: none
-- phase: expand
-- ref: safe form

CREATE INDEX CONCURRENTLY items_title ON items (title);
