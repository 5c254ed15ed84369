-- want: none
-- phase: contract
-- ref: safe form: drops belong in contract

ALTER TABLE items DROP COLUMN legacy_title;
