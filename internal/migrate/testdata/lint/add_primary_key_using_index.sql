-- want: none
-- phase: expand
-- ref: safe form

CREATE UNIQUE INDEX CONCURRENTLY things_pkey ON things (id);
ALTER TABLE things ADD CONSTRAINT things_pkey PRIMARY KEY USING INDEX things_pkey;
