-- want: none
-- phase: expand
-- ref: plain VACUUM does not block reads or writes

VACUUM (ANALYZE) items;
