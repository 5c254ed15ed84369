-- want: lock-table
-- phase: expand
-- ref: SHARE blocks writes

LOCK TABLE items IN SHARE MODE;
