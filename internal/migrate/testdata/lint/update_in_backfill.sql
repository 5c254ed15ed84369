-- want: none
-- ref: the backfill phase is batched

-- handoff:backfill table=items key=id
UPDATE items SET title_lower = lower(title) WHERE id >= :lo AND id < :hi;
