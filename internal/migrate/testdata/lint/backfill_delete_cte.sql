-- want: none
-- ref: a DELETE in a CTE in the backfill phase is batched

-- handoff:backfill table=sessions key=id
WITH gone AS (DELETE FROM sessions WHERE id >= :lo AND id < :hi AND expires_at < now() RETURNING id) SELECT count(*) FROM gone;
