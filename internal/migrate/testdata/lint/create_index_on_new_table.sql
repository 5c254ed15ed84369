-- want: none
-- phase: expand
-- ref: a table created earlier in the same phase is empty

CREATE TABLE tags (id bigint PRIMARY KEY, name text);
CREATE INDEX tags_name ON tags (name);
