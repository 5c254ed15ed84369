-- want: none
-- phase: expand
-- ref: safe form

REFRESH MATERIALIZED VIEW CONCURRENTLY item_counts;
