-- want: whole-table-update
-- phase: expand
-- ref: a DELETE inside a CTE deletes every row just the same

WITH gone AS (DELETE FROM sessions RETURNING id) SELECT count(*) FROM gone;
