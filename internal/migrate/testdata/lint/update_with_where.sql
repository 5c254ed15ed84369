-- want: none
-- phase: expand
-- ref: a bounded change

UPDATE items SET title = 'x' WHERE id = 42;
