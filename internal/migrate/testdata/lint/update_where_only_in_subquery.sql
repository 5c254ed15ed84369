-- want: whole-table-update
-- phase: expand
-- ref: the WHERE is the subquery's, not the UPDATE's

UPDATE items SET owner_name = (SELECT name FROM owners WHERE owners.id = items.owner_id);
