-- want: create-index
-- ref: the exemption is per phase: by contract the table has live rows

-- handoff:expand
CREATE TABLE tags (id bigint PRIMARY KEY, name text);
-- handoff:contract
CREATE INDEX tags_name ON tags (name);
