-- want: whole-table-update
-- phase: contract
-- ref: a WHERE that is always true

UPDATE items SET title_lower = lower(title) WHERE 1 = 1;
