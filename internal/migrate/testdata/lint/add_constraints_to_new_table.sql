-- want: none
-- phase: expand
-- ref: a table created earlier in the same phase

CREATE TABLE bookings (id bigint, room int, during tstzrange);
ALTER TABLE bookings ADD PRIMARY KEY (id);
ALTER TABLE bookings ADD CONSTRAINT bookings_room_ck CHECK (room > 0);
