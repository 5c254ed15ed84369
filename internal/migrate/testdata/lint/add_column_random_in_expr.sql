-- want: volatile-default
-- phase: expand
-- ref: a volatile function inside an expression

ALTER TABLE items ADD COLUMN bucket int DEFAULT (floor(random() * 10))::int;
