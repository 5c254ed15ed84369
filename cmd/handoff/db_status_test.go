package main

import (
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/dbproxy"
)

// TestPrintDBStatus: below the table, each endpoint's replicas with what
// their source measured, a server's error in place, and the switchover
// step by step with the step now running.
func TestPrintDBStatus(t *testing.T) {
	lag, behind, bytes := 234*time.Microsecond, int64(3), int64(0)
	st := &control.DBStatus{Databases: []control.DatabaseStatus{
		{Stats: dbproxy.Stats{Name: "main", Kind: "postgres", Primary: "10.0.0.1:5432", Paused: true, Connections: 3, Idle: 1, Held: 2},
			Listen: "127.0.0.1:6432", Role: "primary",
			Replicas: []control.Replica{
				{Source: "pg_stat_replication", Addr: "10.0.0.2:40112", Name: "walreceiver", State: "streaming, async", ReplayLag: &lag, LagBytes: &bytes},
				{Source: "pg_stat_replication", Addr: "10.0.0.3:40113", Name: "sub", State: "streaming, async"},
			},
			Switchover: &control.SwitchoverStatus{Kind: "postgres-physical", FromAddr: "10.0.0.1:5432", ToAddr: "10.0.0.2:5432",
				Deadline: 5 * time.Second, Started: time.Now().Add(-time.Second), Step: "catching-up", Running: true,
				Steps: []control.SwitchoverStep{{Step: "holding", Took: 2 * time.Millisecond}, {Step: "fencing", At: 2 * time.Millisecond, Took: 10 * time.Millisecond},
					{Step: "catching-up", At: 12 * time.Millisecond}}}},
		{Stats: dbproxy.Stats{Name: "shop", Kind: "mysql", Primary: "10.0.0.5:3306"}, Listen: "127.0.0.1:3307",
			Role: "unknown", RoleError: "i/o timeout", ReplicasError: "i/o timeout",
			Switchover: &control.SwitchoverStatus{Kind: "mysql-gtid", FromAddr: "10.0.0.5:3306", ToAddr: "10.0.0.6:3306", Step: "rolled-back",
				Steps: []control.SwitchoverStep{{Step: "holding"}, {Step: "rolling-back", At: time.Second}, {Step: "rolled-back", At: 1100 * time.Millisecond}},
				Error: "deadline 1s passed"}},
		{Stats: dbproxy.Stats{Name: "cold", Kind: "mysql", Primary: "10.0.0.7:3306"}, Role: "primary",
			Replicas: []control.Replica{{Source: "replica status", Addr: "10.0.0.8:3306", Name: "from 10.0.0.7:3306", State: "io Yes, sql Yes", SecondsBehind: &behind}}},
	}}
	var b strings.Builder
	printDBStatus(&b, st)
	out := b.String()
	for _, want := range []string{
		"main  postgres  127.0.0.1:6432  10.0.0.1:5432  primary (paused)",
		"10.0.0.2:40112 (walreceiver) streaming, async, lag replay 234µs, 0 bytes to replay [pg_stat_replication]",
		"10.0.0.3:40113 (sub) streaming, async, lag not measured (idle) [pg_stat_replication]",
		"switchover (postgres-physical): 10.0.0.1:5432 -> 10.0.0.2:5432", "deadline 5s: running",
		"fencing       10ms", "catching-up   running for ",
		"shop:\n  cannot ask 10.0.0.5:3306 for its role: i/o timeout\n  replicas: cannot read them: i/o timeout",
		": rolled-back", "error: deadline 1s passed",
		"10.0.0.8:3306 (from 10.0.0.7:3306) io Yes, sql Yes, lag 3 s behind [replica status]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("db status lacks %q:\n%s", want, out)
		}
	}
}
