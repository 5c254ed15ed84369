-- want: none
-- phase: expand
-- ref: a table created earlier in the same phase

CREATE TABLE staging (id int);
TRUNCATE staging;
