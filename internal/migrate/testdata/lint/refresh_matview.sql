-- want: refresh-materialized-view
-- phase: expand
-- ref: Postgres: blocks reads of the view

REFRESH MATERIALIZED VIEW item_counts;
