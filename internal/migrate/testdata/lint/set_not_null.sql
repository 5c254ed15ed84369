-- want: set-not-null
-- phase: contract
-- ref: squawk adding-not-nullable-field; strong_migrations setting NOT NULL

ALTER TABLE items ALTER COLUMN title SET NOT NULL;
