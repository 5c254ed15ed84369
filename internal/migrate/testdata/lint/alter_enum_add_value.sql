-- want: none
-- phase: expand
-- ref: safe since Postgres 12: ALTER TYPE … ADD VALUE takes no table lock

ALTER TYPE item_state ADD VALUE 'archived';
