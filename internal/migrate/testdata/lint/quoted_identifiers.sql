-- want: create-index
-- phase: expand
-- ref: quoted names and comments

/* a comment; with a semicolon */
CREATE INDEX "Items_Title" ON "Items" ("Title"); -- trailing
