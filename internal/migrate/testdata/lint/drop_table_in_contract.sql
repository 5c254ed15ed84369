-- want: none
-- phase: contract
-- ref: safe form: drops belong in contract

DROP TABLE IF EXISTS legacy_items;
