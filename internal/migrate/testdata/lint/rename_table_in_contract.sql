-- want: rename-table
-- phase: contract
-- ref: a rename breaks a release in any phase

ALTER TABLE IF EXISTS public.items RENAME TO products;
