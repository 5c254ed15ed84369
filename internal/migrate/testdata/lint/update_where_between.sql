-- want: none
-- phase: expand
-- ref: a bounded change

UPDATE items SET title = lower(title) WHERE id BETWEEN 1 AND 1000;
