package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/dbproxy"
	"github.com/handoff-dev/handoff/internal/switchover"
	"github.com/jackc/pgx/v5"
)

// db status: each endpoint's connections (the endpoint's own counts), its
// primary's role and replicas (asked of the servers, bounded by
// probeTimeout, kept for probeTTL), and the running or last switchover
// (its journal record, read again on every call so that a running one is
// shown step by step).

// probeTimeout bounds asking the servers: one that does not answer shows
// as an error in place, it does not hold db status up.
const probeTimeout = 2 * time.Second

// probeTTL is how long a probe's answer is reused: the dashboard asks
// every half second for each open page, and each probe is a new login on
// the servers.
const probeTTL = time.Second

// DBStatus reports every endpoint with its primary's role, its replicas
// and its switchover.
func (s *Server) DBStatus(ctx context.Context) (*control.DBStatus, error) {
	out := &control.DBStatus{Databases: make([]control.DatabaseStatus, len(s.dbs))}
	var wg sync.WaitGroup
	for i, d := range s.dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out.Databases[i] = s.databaseStatus(ctx, d)
		}()
	}
	wg.Wait()
	return out, nil
}

func (s *Server) databaseStatus(ctx context.Context, d *dbEndpoint) control.DatabaseStatus {
	st := d.ep.Stats()
	ds := control.DatabaseStatus{Stats: st, Listen: d.cfg.Listen}
	rec, err := s.switchoverRecord(ctx, d.cfg.Name)
	if err != nil {
		ds.SwitchoverError = err.Error()
	}
	if rec != nil {
		ds.Switchover = switchoverStatus(*rec)
	}
	// A MySQL replica is asked for its own lag when the last switchover
	// names it and it is not the primary now: the primary cannot tell.
	replica := ""
	if rec != nil && d.cfg.Kind == config.DatabaseMySQL && rec.ToAddr != st.Primary {
		replica = rec.ToAddr
	}
	p := d.probes.get(ctx, d, st.Primary, replica)
	ds.Role, ds.Replicas, ds.ReplicasError = p.role, p.replicas, p.replicasErr
	if p.roleErr != "" {
		ds.Role, ds.RoleError = "unknown", p.roleErr
	}
	if ds.Replicas == nil {
		ds.Replicas = []control.Replica{}
	}
	return ds
}

// switchoverRecord reads the endpoint's switchover journal record, nil if
// it has had none.
func (s *Server) switchoverRecord(ctx context.Context, name string) (*switchover.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var rec switchover.Record
	ok, err := s.store.Get(ctx, switchover.JournalKind, name, &rec)
	if err != nil {
		return nil, fmt.Errorf("read the switchover journal: %w", err)
	}
	if !ok {
		return nil, nil
	}
	return &rec, nil
}

// switchoverStatus is rec for status: no passwords, each step's time.
func switchoverStatus(rec switchover.Record) *control.SwitchoverStatus {
	out := &control.SwitchoverStatus{Kind: rec.Kind, From: switchover.RedactURL(rec.From), To: switchover.RedactURL(rec.To),
		FromAddr: rec.FromAddr, ToAddr: rec.ToAddr, Deadline: rec.Deadline, Started: rec.Started,
		Migrate: rec.Migrate, Window: rec.Window, Reverse: rec.Reverse,
		Step: string(rec.Step), Running: !rec.Step.Final(), Error: rec.Error, Recovered: rec.Recovered,
		Steps: make([]control.SwitchoverStep, len(rec.Steps))}
	for i, st := range rec.Steps {
		out.Steps[i] = control.SwitchoverStep{Step: string(st.Step), At: st.At}
		if i+1 < len(rec.Steps) {
			out.Steps[i].Took = rec.Steps[i+1].At - st.At
		}
	}
	return out
}

// probe is what the servers said.
type probe struct {
	at               time.Time
	primary, replica string
	role, roleErr    string
	replicas         []control.Replica
	replicasErr      string
	done             chan struct{} // closed when the fields above are set
}

// probeCache holds an endpoint's last probe; callers that come while one
// runs wait for it rather than log in again.
type probeCache struct {
	mu   sync.Mutex
	last *probe
}

// get returns a probe of primary (and replica) at most probeTTL old.
func (c *probeCache) get(ctx context.Context, d *dbEndpoint, primary, replica string) *probe {
	c.mu.Lock()
	p := c.last
	if p == nil || p.primary != primary || p.replica != replica || (isClosed(p.done) && time.Since(p.at) > probeTTL) {
		p = &probe{primary: primary, replica: replica, done: make(chan struct{})}
		c.last = p
		// Its own context: a caller that goes away must not leave the
		// others an error of its making.
		go func() {
			defer close(p.done)
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeTimeout)
			defer cancel()
			p.run(pctx, d)
			p.at = time.Now()
		}()
	}
	c.mu.Unlock()
	select {
	case <-p.done:
		return p
	case <-ctx.Done():
		return &probe{role: "unknown", roleErr: ctx.Err().Error(), replicasErr: ctx.Err().Error()}
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// run asks the servers, logging in as the endpoint's user with its
// password from the credentials file.
func (p *probe) run(ctx context.Context, d *dbEndpoint) {
	fail := func(err error) { p.roleErr, p.replicasErr = err.Error(), err.Error() }
	password, err := probePassword(d)
	if err != nil {
		fail(err)
		return
	}
	if d.cfg.Kind == config.DatabaseMySQL {
		db, err := mysqlProbeDB(d, password, p.primary)
		if err != nil {
			fail(err)
			return
		}
		defer db.Close()
		p.role, err = mysqlRole(ctx, db)
		if err != nil {
			fail(err)
			return
		}
		if p.replicas, err = mysqlReplicaHosts(ctx, db); err != nil {
			p.replicasErr = err.Error()
		}
		if p.replica != "" {
			p.replicas = append(p.replicas, mysqlReplicaStatus(ctx, d, password, p.replica))
		}
		return
	}
	conn, err := pgProbeConn(ctx, d, password, p.primary)
	if err != nil {
		fail(err)
		return
	}
	defer conn.Close(context.Background())
	if p.role, err = pgRole(ctx, conn); err != nil {
		fail(err)
		return
	}
	if p.replicas, err = pgReplicas(ctx, conn); err != nil {
		p.replicasErr = err.Error()
	}
}

// probeRole asks the server at addr whether it is a primary.
func probeRole(ctx context.Context, d *dbEndpoint, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	password, err := probePassword(d)
	if err != nil {
		return "", err
	}
	if d.cfg.Kind == config.DatabaseMySQL {
		db, err := mysqlProbeDB(d, password, addr)
		if err != nil {
			return "", err
		}
		defer db.Close()
		return mysqlRole(ctx, db)
	}
	conn, err := pgProbeConn(ctx, d, password, addr)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	return pgRole(ctx, conn)
}

func probePassword(d *dbEndpoint) (string, error) {
	if d.cfg.CredentialsFile == "" {
		return "", nil
	}
	pw, err := dbproxy.CredentialsFile(d.cfg.CredentialsFile)
	if err != nil {
		return "", err
	}
	return pw(d.cfg.User)
}

func pgProbeConn(ctx context.Context, d *dbEndpoint, password, addr string) (*pgx.Conn, error) {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(d.cfg.User, password), Host: addr, Path: "/postgres"}
	cfg, err := pgx.ParseConfig(u.String() + "?sslmode=disable&connect_timeout=2")
	if err != nil {
		return nil, err
	}
	if cfg.TLSConfig, err = probeTLS(d, addr); err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// probeTLS is the endpoint's TLS config for a probe of the server at addr
// (nil: plaintext), checking the certificate against addr's host.
func probeTLS(d *dbEndpoint, addr string) (*tls.Config, error) {
	cfg, err := dbproxy.TLSConfig(d.cfg.TLS, d.cfg.TLSCAFile)
	return dbproxy.TLSFor(cfg, addr), err
}

func pgRole(ctx context.Context, conn *pgx.Conn) (string, error) {
	var standby bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil {
		return "", err
	}
	if standby {
		return "standby", nil
	}
	return "primary", nil
}

// pgReplicas reads pg_stat_replication on the primary: every walsender,
// physical standbys and logical subscribers alike. Lags are read as
// microseconds, so that NULL (not measured) stays apart from 0.
func pgReplicas(ctx context.Context, conn *pgx.Conn) ([]control.Replica, error) {
	rows, err := conn.Query(ctx, `SELECT host(client_addr), client_port, application_name, state, sync_state,
		(extract(epoch FROM write_lag) * 1e6)::bigint, (extract(epoch FROM flush_lag) * 1e6)::bigint,
		(extract(epoch FROM replay_lag) * 1e6)::bigint,
		CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint END
		FROM pg_stat_replication ORDER BY application_name, client_addr, client_port`)
	if err != nil {
		return nil, fmt.Errorf("read pg_stat_replication: %w", err)
	}
	defer rows.Close()
	var out []control.Replica
	for rows.Next() {
		var host, app, state, sync *string
		var port, write, flush, replay, lagBytes *int64
		if err := rows.Scan(&host, &port, &app, &state, &sync, &write, &flush, &replay, &lagBytes); err != nil {
			return nil, fmt.Errorf("read pg_stat_replication: %w", err)
		}
		r := control.Replica{Source: "pg_stat_replication", Name: deref(app), WriteLag: micros(write),
			FlushLag: micros(flush), ReplayLag: micros(replay), LagBytes: lagBytes}
		switch {
		case host != nil && port != nil:
			r.Addr = net.JoinHostPort(*host, strconv.FormatInt(*port, 10))
		case state != nil:
			r.Addr = "local socket"
		default:
			// A user without pg_read_all_stats sees the rows of other
			// users' walsenders with these columns NULL.
			r.Error = "details hidden: the endpoint's user needs the pg_monitor role to see them"
		}
		if state != nil {
			r.State = *state
			if sync != nil && *sync != "" {
				r.State += ", " + *sync
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read pg_stat_replication: %w", err)
	}
	return out, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func micros(us *int64) *time.Duration {
	if us == nil {
		return nil
	}
	d := time.Duration(*us) * time.Microsecond
	return &d
}

func mysqlProbeDB(d *dbEndpoint, password, addr string) (*sql.DB, error) {
	mc := mysql.NewConfig()
	mc.User, mc.Passwd, mc.Net, mc.Addr = d.cfg.User, password, "tcp", addr
	mc.Timeout, mc.ReadTimeout, mc.WriteTimeout = probeTimeout, probeTimeout, probeTimeout
	var err error
	if mc.TLS, err = probeTLS(d, addr); err != nil {
		return nil, err
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	return db, nil
}

func mysqlRole(ctx context.Context, db *sql.DB) (string, error) {
	var readOnly bool
	if err := db.QueryRowContext(ctx, "SELECT @@global.read_only").Scan(&readOnly); err != nil {
		return "", err
	}
	if readOnly {
		return "read-only", nil
	}
	return "primary", nil
}

// mysqlReplicaHosts is the primary's list of the replicas connected to it
// (SHOW SLAVE HOSTS; SHOW REPLICAS on MySQL 8.4, which dropped the other).
// The primary does not know their lag.
func mysqlReplicaHosts(ctx context.Context, db *sql.DB) ([]control.Replica, error) {
	rows, err := showRows(ctx, db, "SHOW SLAVE HOSTS", "SHOW REPLICAS")
	if err != nil {
		return nil, err
	}
	var out []control.Replica
	for _, row := range rows {
		r := control.Replica{Source: "replica hosts", Name: "server_id " + row["Server_id"]}
		if host := row["Host"]; host != "" {
			r.Addr = net.JoinHostPort(host, row["Port"])
		} else {
			r.Addr = "(no report_host)"
		}
		out = append(out, r)
	}
	return out, nil
}

// mysqlReplicaStatus asks the replica at addr its own replication status
// (SHOW SLAVE STATUS, or SHOW REPLICA STATUS on MySQL 8.4).
func mysqlReplicaStatus(ctx context.Context, d *dbEndpoint, password, addr string) control.Replica {
	r := control.Replica{Source: "replica status", Addr: addr}
	db, err := mysqlProbeDB(d, password, addr)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer db.Close()
	rows, err := showRows(ctx, db, "SHOW SLAVE STATUS", "SHOW REPLICA STATUS")
	if err != nil {
		r.Error = err.Error()
		return r
	}
	if len(rows) == 0 {
		r.Error = "does not replicate (SHOW SLAVE STATUS is empty)"
		return r
	}
	row := rows[0]
	either := func(a, b string) string { return cmp.Or(row[a], row[b]) }
	r.Name = "from " + net.JoinHostPort(either("Master_Host", "Source_Host"), either("Master_Port", "Source_Port"))
	r.State = "io " + either("Slave_IO_Running", "Replica_IO_Running") + ", sql " + either("Slave_SQL_Running", "Replica_SQL_Running")
	if s, err := strconv.ParseInt(either("Seconds_Behind_Master", "Seconds_Behind_Source"), 10, 64); err == nil {
		r.SecondsBehind = &s
	}
	if e := cmp.Or(row["Last_IO_Error"], row["Last_SQL_Error"]); e != "" {
		r.Error = e
	}
	return r
}

// showRows runs the first of stmts the server knows and returns its rows
// as column → value (NULL as "").
func showRows(ctx context.Context, db *sql.DB, stmts ...string) ([]map[string]string, error) {
	var rows *sql.Rows
	var err error
	for _, q := range stmts {
		if rows, err = db.QueryContext(ctx, q); err == nil {
			break
		}
		if ctx.Err() != nil || !strings.Contains(err.Error(), "syntax") {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", strings.Join(stmts, ", "), err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []map[string]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := map[string]string{}
		for i, c := range cols {
			row[c] = vals[i].String
		}
		out = append(out, row)
	}
	return out, rows.Err()
}
