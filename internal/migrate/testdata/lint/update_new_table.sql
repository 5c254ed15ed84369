-- want: none
-- phase: expand
-- ref: filling a new table

CREATE TABLE archive (LIKE items);
UPDATE archive SET title = lower(title);
