package server

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/dbproxy"
	"github.com/handoff-dev/handoff/internal/store"
	"github.com/handoff-dev/handoff/internal/switchover"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// statusServer is a Server with only what DBStatus needs: a state store
// and one endpoint (not serving) pointing at primary.
func statusServer(t *testing.T, kind, user, primary string) *Server {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ep, err := dbproxy.New(dbproxy.Options{Name: "main", Kind: dbproxy.Kind(kind), Primary: primary})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.DatabaseEndpoint{Name: "main", Kind: kind, User: user, TLS: "disable", Listen: "127.0.0.1:6432", Primary: primary}
	return &Server{store: st, dbs: []*dbEndpoint{{cfg: cfg, ep: ep}}}
}

// TestDBStatusPostgresStandby: a physical standby of a real Postgres shows
// in db status as a replica of the primary, with its address, streaming
// state and a measured lag once the primary writes; the JSON carries the
// fields docs/databases.md names.
func TestDBStatusPostgresStandby(t *testing.T) {
	primary := testdb.NewPG(t)
	standby := primary.Standby(t)
	primary.Exec(t, "postgres", "CREATE TABLE ticks (n int)")
	s := statusServer(t, config.DatabasePostgres, "postgres", primary.Addr())

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var got control.DatabaseStatus
	for {
		// Writes keep the lag measured: Postgres clears it a moment
		// after an idle primary's standby caught up.
		primary.Exec(t, "postgres", "INSERT INTO ticks VALUES (1)")
		st, err := s.DBStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = st.Databases[0]
		if len(got.Replicas) == 1 && got.Replicas[0].ReplayLag != nil && got.Replicas[0].LagBytes != nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no replica with a measured lag within 60 s: %+v", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got.Role != "primary" || got.RoleError != "" || got.ReplicasError != "" {
		t.Fatalf("role %q (%s), replicas error %q", got.Role, got.RoleError, got.ReplicasError)
	}
	r := got.Replicas[0]
	if r.Source != "pg_stat_replication" || !strings.HasPrefix(r.State, "streaming") || !strings.HasPrefix(r.Addr, "127.0.0.1:") {
		t.Errorf("the standby as a replica: %+v", r)
	}
	if *r.ReplayLag < 0 || *r.ReplayLag > 30*time.Second || *r.LagBytes < 0 {
		t.Errorf("lag: replay %v, %d bytes", *r.ReplayLag, *r.LagBytes)
	}
	t.Logf("standby %s at %s: %s, write %v flush %v replay %v, %d bytes to replay", standby.Addr(), r.Addr, r.State, r.WriteLag, r.FlushLag, *r.ReplayLag, *r.LagBytes)

	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	json.Unmarshal(b, &fields)
	reps, _ := fields["replicas"].([]any)
	if len(reps) != 1 {
		t.Fatalf("JSON replicas: %s", b)
	}
	for _, k := range []string{"source", "addr", "state", "replay_lag_ns", "lag_bytes"} {
		if _, ok := reps[0].(map[string]any)[k]; !ok {
			t.Errorf("JSON replica lacks %q: %s", k, b)
		}
	}

	// The standby itself, asked as a primary would be: a standby, and no
	// walsender of its own.
	ss := statusServer(t, config.DatabasePostgres, "postgres", standby.Addr())
	st, err := ss.DBStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := st.Databases[0]; d.Role != "standby" || len(d.Replicas) != 0 || d.Replicas == nil {
		t.Errorf("the standby's own status: role %q, replicas %+v", d.Role, d.Replicas)
	}
}

// TestDBStatusUnansweringServer: a server that accepts connections and
// never answers costs db status the probe's timeout, not a hang, and
// shows as an error in place.
func TestDBStatusUnansweringServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent
		}
	}()
	for _, kind := range []string{config.DatabasePostgres, config.DatabaseMySQL} {
		s := statusServer(t, kind, "someone", l.Addr().String())
		start := time.Now()
		st, err := s.DBStatus(context.Background())
		took := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		d := st.Databases[0]
		if d.Role != "unknown" || d.RoleError == "" || d.ReplicasError == "" {
			t.Errorf("%s: a silent server: role %q (%q), replicas error %q", kind, d.Role, d.RoleError, d.ReplicasError)
		}
		if took > probeTimeout+3*time.Second {
			t.Errorf("%s: db status took %v with a silent server; the probe is bounded by %v", kind, took, probeTimeout)
		}
	}
}

// TestDBStatusSwitchoverRecord: the journal's record shows as the
// switchover, URLs without passwords, each step with how long it took,
// and running until it is final.
func TestDBStatusSwitchoverRecord(t *testing.T) {
	s := statusServer(t, config.DatabasePostgres, "postgres", "127.0.0.1:1") // nothing listens: role unknown, fine here
	ctx := context.Background()
	rec := switchover.Record{Name: "main", Kind: "postgres-physical", From: "postgres://app:secret@10.0.0.1:5432/app",
		To: "postgres://app:secret@10.0.0.2:5432/app", FromAddr: "10.0.0.1:5432", ToAddr: "10.0.0.2:5432",
		Deadline: 5 * time.Second, Started: time.Now().Add(-time.Second), Step: switchover.CatchingUp,
		Steps: []switchover.StepTime{{Step: switchover.Holding, At: 0}, {Step: switchover.Fencing, At: 120 * time.Millisecond},
			{Step: switchover.CatchingUp, At: 150 * time.Millisecond}}}
	if err := s.store.Put(ctx, switchover.JournalKind, "main", rec); err != nil {
		t.Fatal(err)
	}
	st, err := s.DBStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sw := st.Databases[0].Switchover
	if sw == nil || !sw.Running || sw.Step != "catching-up" || len(sw.Steps) != 3 {
		t.Fatalf("a running switchover: %+v", sw)
	}
	if sw.Steps[0].Took != 120*time.Millisecond || sw.Steps[1].Took != 30*time.Millisecond || sw.Steps[2].Took != 0 {
		t.Errorf("step times: %+v", sw.Steps)
	}
	if b, _ := json.Marshal(st); strings.Contains(string(b), "secret") {
		t.Errorf("a password in db status: %s", b)
	}

	rec.Step, rec.Error = switchover.RolledBack, "deadline 5s passed"
	rec.Steps = append(rec.Steps, switchover.StepTime{Step: switchover.RollingBack, At: 5 * time.Second}, switchover.StepTime{Step: switchover.RolledBack, At: 5100 * time.Millisecond})
	if err := s.store.Put(ctx, switchover.JournalKind, "main", rec); err != nil {
		t.Fatal(err)
	}
	st, err = s.DBStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sw := st.Databases[0].Switchover; sw == nil || sw.Running || sw.Step != "rolled-back" || sw.Error != "deadline 5s passed" {
		t.Errorf("a rolled-back switchover: %+v", sw)
	}
}

// TestDBStatusMariaDBReplica: MariaDB's primary lists its GTID replica
// (SHOW SLAVE HOSTS: no lag), and the replica a rolled-back switchover
// named is asked its own Seconds_Behind_Master.
func TestDBStatusMariaDBReplica(t *testing.T) {
	primary := testdb.NewMariaDB(t)
	replica := primary.Replica(t)
	s := statusServer(t, config.DatabaseMySQL, "root", primary.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rec := switchover.Record{Name: "main", Kind: "mysql-gtid", FromAddr: primary.Addr(), ToAddr: replica.Addr(),
		Started: time.Now(), Step: switchover.RolledBack, Error: "deadline passed"}
	if err := s.store.Put(ctx, switchover.JournalKind, "main", rec); err != nil {
		t.Fatal(err)
	}
	st, err := s.DBStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := st.Databases[0]
	if d.Role != "primary" || d.ReplicasError != "" {
		t.Fatalf("role %q (%s), replicas error %q", d.Role, d.RoleError, d.ReplicasError)
	}
	var hosts, own []control.Replica
	for _, r := range d.Replicas {
		switch r.Source {
		case "replica hosts":
			hosts = append(hosts, r)
		case "replica status":
			own = append(own, r)
		}
	}
	if len(hosts) != 1 {
		t.Errorf("the primary's replica hosts: %+v", d.Replicas)
	}
	if len(own) != 1 || own[0].Addr != replica.Addr() || own[0].SecondsBehind == nil || *own[0].SecondsBehind != 0 ||
		own[0].State != "io Yes, sql Yes" || own[0].Error != "" {
		t.Errorf("the replica's own status: %+v", own)
	}
	t.Logf("replicas: %+v", d.Replicas)
}
