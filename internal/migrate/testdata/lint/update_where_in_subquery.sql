-- want: none
-- phase: expand
-- ref: a real WHERE that uses a subquery is bounded

UPDATE items SET archived = true WHERE id IN (SELECT item_id FROM old_items WHERE created < now() - interval '5 years');
