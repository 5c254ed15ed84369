-- want: column-type
-- phase: expand
-- ref: a USING clause rewrites

ALTER TABLE items ALTER COLUMN title TYPE varchar(200) USING substr(title, 1, 200);
