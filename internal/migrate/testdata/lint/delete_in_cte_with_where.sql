-- want: none
-- phase: contract
-- ref: a bounded DELETE inside a CTE

WITH gone AS (DELETE FROM sessions WHERE expires_at < now() RETURNING id) SELECT count(*) FROM gone;
