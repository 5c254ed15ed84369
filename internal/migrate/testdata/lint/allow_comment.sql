-- want: none
-- phase: expand
-- ref: waived by the author

-- handoff:allow create-index
CREATE INDEX items_title ON items (title);
