-- want: add-exclude
-- phase: expand
-- ref: strong_migrations adding an exclusion constraint

ALTER TABLE bookings ADD CONSTRAINT bookings_no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);
