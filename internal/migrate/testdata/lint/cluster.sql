-- want: cluster
-- phase: expand
-- ref: Postgres: CLUSTER rewrites under ACCESS EXCLUSIVE

CLUSTER items USING items_pkey;
