-- want: none
-- phase: expand
-- ref: a schema-qualified new table

CREATE TABLE app.tags (id bigint PRIMARY KEY, name text);
CREATE INDEX tags_name ON app.tags (name);
