-- want: none
-- phase: expand
-- ref: a table created earlier in the same phase

CREATE TABLE scratch (id int);
DROP TABLE scratch;
