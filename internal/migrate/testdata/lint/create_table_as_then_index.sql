-- want: none
-- phase: expand
-- ref: CREATE TABLE AS makes a new table in this phase

CREATE TABLE item_stats AS SELECT owner_id, count(*) AS n FROM items GROUP BY owner_id;
CREATE INDEX item_stats_owner ON item_stats (owner_id);
