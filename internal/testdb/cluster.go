package testdb

// Temporary database SERVERS for tests that need more than a database: a
// Postgres 15 cluster of their own (to promote, stop, kill -9), a physical
// standby of it, a logical subscription between two clusters, and a MariaDB
// server with a GTID replica. Each lives in its own temp dir on its own
// 127.0.0.1 port and is stopped and removed by t.Cleanup.
//
// Without the server binaries a test is skipped saying what to install; in
// CI (CI set) it fails instead, so that a missing install step cannot turn
// the proof into a skip.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
)

// PostgresBin is where Debian's postgresql-15 puts the server binaries;
// HANDOFF_TEST_PGBIN overrides it.
const PostgresBin = "/usr/lib/postgresql/15/bin"

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 60 * time.Second

// PG is a temporary Postgres cluster: a primary, a physical standby
// (Standby) or a logical subscriber (Subscribe).
type PG struct {
	Dir  string // the data directory
	Port int    // on 127.0.0.1

	t   testing.TB
	bin string
	process
}

// process is a temp server's running process: started by launch, stopped
// (and waited for) by stop.
type process struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{} // closed when cmd has been waited for
}

// launch starts cmd and returns the channel closed once it has exited.
func (p *process) launch(cmd *exec.Cmd) (exit <-chan struct{}, err error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.cmd, p.exit = cmd, done
	p.mu.Unlock()
	return done, nil
}

// stop sends sig and waits for the process to exit, killing it after 30 s.
func (p *process) stop(sig syscall.Signal) {
	p.mu.Lock()
	cmd, exit := p.cmd, p.exit
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	if sig == syscall.SIGKILL {
		// A crash takes the whole server: Postgres's backends outlive a
		// killed postmaster for a moment, attached to its shared memory,
		// and a restart meanwhile fails ("pre-existing shared memory
		// block is still in use"). Each backend begins a session of its
		// own (setsid), so neither the server's process group nor
		// Pdeathsig reaches them: its children, listed before the kill,
		// are killed with it and waited for.
		kids := childrenOf(cmd.Process.Pid)
		_ = syscall.Kill(-cmd.Process.Pid, sig)
		for _, k := range kids {
			_ = syscall.Kill(k, sig)
		}
		<-exit
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			alive := syscall.Kill(-cmd.Process.Pid, 0) == nil
			for _, k := range kids {
				alive = alive || syscall.Kill(k, 0) == nil
			}
			if !alive {
				break
			}
		}
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exit:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exit
	}
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	var kids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command name, which may hold spaces: state, ppid.
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 {
			if f := strings.Fields(string(stat[i+1:])); len(f) > 1 && f[1] == strconv.Itoa(pid) {
				kids = append(kids, child)
			}
		}
	}
	return kids
}

// NewPG initdb's and starts a fresh cluster (superuser postgres, trust auth
// on 127.0.0.1, wal_level=logical) and returns it running.
func NewPG(t testing.TB) *PG {
	t.Helper()
	p := newPGDir(t)
	p.run(t, "initdb", "-D", p.Dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
	p.Start(t)
	return p
}

func newPGDir(t testing.TB) *PG {
	t.Helper()
	bin := os.Getenv("HANDOFF_TEST_PGBIN")
	if bin == "" {
		bin = PostgresBin
	}
	if _, err := os.Stat(filepath.Join(bin, "postgres")); err != nil {
		missing(t, "Postgres server binaries (%v); install postgresql-15 (bash .ci/install-dbservers) or set HANDOFF_TEST_PGBIN", err)
	}
	base := ownedTempDir(t, "handoff-pg-", "postgres")
	return &PG{Dir: filepath.Join(base, "data"), t: t, bin: bin}
}

// URL is the connection URL of database db on the cluster.
func (p *PG) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// Addr is the cluster's host:port.
func (p *PG) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)) }

// Start starts the cluster's postmaster (again) and waits until it accepts
// connections. The first Start picks a free port; later ones keep it.
func (p *PG) Start(t testing.TB) {
	t.Helper()
	if p.Port == 0 {
		p.Port = freePort(t)
	}
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), "-D", p.Dir, "-p", strconv.Itoa(p.Port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+filepath.Dir(p.Dir),
		"-c", "wal_level=logical", "-c", "max_wal_senders=10", "-c", "max_replication_slots=10",
		"-c", "hot_standby=on", "-c", "hot_standby_feedback=on", "-c", "fsync=off",
		"-c", "shared_buffers=16MB", "-c", "max_connections=60", "-c", "wal_sender_timeout=5s",
		"-c", "wal_receiver_status_interval=1s", "-c", "logging_collector=off")
	logf, err := os.Create(filepath.Join(filepath.Dir(p.Dir), "server.log"))
	if err != nil {
		t.Fatalf("postgres log: %v", err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = serverAttr(t, "postgres")
	exit, err := p.launch(cmd)
	logf.Close()
	if err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	t.Cleanup(func() { p.stop(syscall.SIGQUIT) })
	if err := waitFor(exit, func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, p.URL("postgres"))
		if err != nil {
			return err
		}
		return c.Close(ctx)
	}); err != nil {
		t.Fatalf("postgres on port %d did not start: %v\n%s", p.Port, err, tail(filepath.Join(filepath.Dir(p.Dir), "server.log")))
	}
}

// Kill sends SIGKILL to the postmaster and waits for it to exit: a crash.
func (p *PG) Kill() { p.stop(syscall.SIGKILL) }

// Stop shuts the cluster down (fast: open sessions are ended).
func (p *PG) Stop() { p.stop(syscall.SIGINT) }

// Exec runs SQL (several statements allowed) on database db.
func (p *PG) Exec(t testing.TB, db, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c, err := pgx.Connect(ctx, p.URL(db))
	if err != nil {
		t.Fatalf("connect %s: %v", p.URL(db), err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		t.Fatalf("on %s: %s: %v", p.URL(db), sql, err)
	}
}

// Standby makes a physical streaming standby of p (pg_basebackup -R, WAL
// streamed) and starts it; pg_promote() on it makes it a primary.
func (p *PG) Standby(t testing.TB) *PG {
	t.Helper()
	s := newPGDir(t)
	s.bin = p.bin
	s.run(t, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", "postgres",
		"-D", s.Dir, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	s.Start(t)
	return s
}

// Subscribe makes database db of p a logical subscriber of the same
// database of from: it creates db on p if missing, copies the schema
// (pg_dump --schema-only), publishes every table of from as name, subscribes
// p to it as name, and waits until the initial copy of every table is done.
func (p *PG) Subscribe(t testing.TB, from *PG, db, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if db != "postgres" {
		c, err := pgx.Connect(ctx, p.URL("postgres"))
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		var n int
		_ = c.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", db).Scan(&n)
		if n == 0 {
			if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
				t.Fatalf("create database %s: %v", db, err)
			}
		}
		c.Close(ctx)
	}
	// psql, not Exec: pg_dump's output carries psql meta-commands (\restrict).
	schema := p.output(t, "", "pg_dump", "--schema-only", "--no-publications", "--no-subscriptions", from.URL(db))
	p.output(t, schema, "psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", "-d", p.URL(db))
	from.Exec(t, db, "CREATE PUBLICATION "+pgx.Identifier{name}.Sanitize()+" FOR ALL TABLES")
	conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s", from.Port, db)
	p.Exec(t, db, fmt.Sprintf("CREATE SUBSCRIPTION %s CONNECTION '%s' PUBLICATION %s",
		pgx.Identifier{name}.Sanitize(), conninfo, pgx.Identifier{name}.Sanitize()))
	c, err := pgx.Connect(ctx, p.URL(db))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close(ctx)
	for {
		var pending int
		err := c.QueryRow(ctx, "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'").Scan(&pending)
		if err != nil {
			t.Fatalf("subscription %s: %v", name, err)
		}
		if pending == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("subscription %s: %d tables still copying after %v", name, pending, startTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// run runs one of the cluster's binaries as the cluster's owner.
func (p *PG) run(t testing.TB, name string, args ...string) {
	t.Helper()
	p.output(t, "", name, args...)
}

func (p *PG) output(t testing.TB, stdin, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Dir = filepath.Dir(p.Dir)
	cmd.SysProcAttr = serverAttr(t, "postgres")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// MariaDB is a temporary MariaDB server with binary log and GTIDs on: a
// primary, or a GTID replica of one (Replica).
type MariaDB struct {
	Dir      string
	Port     int // on 127.0.0.1; user root, no password
	Socket   string
	ServerID int

	tlsArgs []string // set by ServeTLS
	process
}

var serverIDs struct {
	sync.Mutex
	next int
}

// NewMariaDB installs (mariadb-install-db) and starts a fresh server.
func NewMariaDB(t testing.TB) *MariaDB {
	t.Helper()
	for _, b := range []string{"mariadbd", "mariadb-install-db"} {
		if _, err := exec.LookPath(b); err != nil {
			missing(t, "MariaDB (%v); install mariadb-server (bash .ci/install-dbservers)", err)
		}
	}
	base := ownedTempDir(t, "handoff-mariadb-", "mysql")
	serverIDs.Lock()
	serverIDs.next++
	id := serverIDs.next + os.Getpid()%1000*100
	serverIDs.Unlock()
	m := &MariaDB{Dir: filepath.Join(base, "data"), Socket: filepath.Join(base, "sock"), ServerID: id}
	// A temp dir of its own: in the shared /tmp, installs and servers
	// running side by side collided on their temporary tables' names
	// ("Could not remove temporary table '/tmp/#sql-temptable-…'").
	tmp := m.tmpDir()
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		uid, gid := lookupUser(t, "mysql")
		if err := os.Chown(tmp, uid, gid); err != nil {
			t.Fatalf("chown %s: %v", tmp, err)
		}
	}
	args := []string{"--no-defaults", "--datadir=" + m.Dir, "--tmpdir=" + tmp, "--auth-root-authentication-method=normal", "--skip-test-db"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=mysql")
	}
	cmd := exec.Command("mariadb-install-db", args...)
	cmd.Dir = base
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	m.Start(t)
	return m
}

// DSN is the go-sql-driver/mysql DSN of database db ("" for none).
func (m *MariaDB) DSN(db string) string {
	dsn := fmt.Sprintf("root@tcp(127.0.0.1:%d)/%s?parseTime=true&timeout=5s", m.Port, db)
	if m.tlsArgs != nil {
		dsn += "&tls=skip-verify"
	}
	return dsn
}

// Addr is the server's host:port.
func (m *MariaDB) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.Port)) }

// tmpDir is the server's own temporary directory, beside its data.
func (m *MariaDB) tmpDir() string { return filepath.Join(filepath.Dir(m.Dir), "tmp") }

// Start starts the server (again) and waits until it accepts connections.
func (m *MariaDB) Start(t testing.TB) {
	t.Helper()
	if m.Port == 0 {
		m.Port = freePort(t)
	}
	base := filepath.Dir(m.Dir)
	args := []string{"--no-defaults", "--datadir=" + m.Dir, "--tmpdir=" + m.tmpDir(), "--port=" + strconv.Itoa(m.Port),
		"--bind-address=127.0.0.1", "--socket=" + m.Socket, "--pid-file=" + filepath.Join(base, "pid"),
		"--server-id=" + strconv.Itoa(m.ServerID), "--log-bin=binlog", "--binlog-format=ROW",
		"--log-slave-updates", "--gtid-strict-mode=1", "--skip-name-resolve",
		"--innodb-buffer-pool-size=16M", "--innodb-log-file-size=16M", "--innodb-flush-log-at-trx-commit=2",
		"--sync-binlog=0", "--max-connections=100", "--log-error=" + filepath.Join(base, "server.log")}
	args = append(args, m.tlsArgs...)
	if os.Geteuid() == 0 {
		args = append(args, "--user=mysql")
	}
	cmd := exec.Command("mariadbd", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	exit, err := m.launch(cmd)
	if err != nil {
		t.Fatalf("start mariadbd: %v", err)
	}
	t.Cleanup(func() { m.stop(syscall.SIGTERM) })
	if err := waitFor(exit, func(ctx context.Context) error {
		db, err := m.open("")
		if err != nil {
			return err
		}
		defer db.Close()
		return db.PingContext(ctx)
	}); err != nil {
		t.Fatalf("mariadbd on port %d did not start: %v\n%s", m.Port, err, tail(filepath.Join(base, "server.log")))
	}
}

// Kill sends SIGKILL to the server and waits for it to exit: a crash.
func (m *MariaDB) Kill() { m.stop(syscall.SIGKILL) }

// Stop shuts the server down.
func (m *MariaDB) Stop() { m.stop(syscall.SIGTERM) }

func (m *MariaDB) open(db string) (*sql.DB, error) {
	return sql.Open("mysql", m.DSN(db))
}

// Exec runs statements, one per string, on one connection to database db
// ("" for none).
func (m *MariaDB) Exec(t testing.TB, db string, stmts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	pool, err := m.open(db)
	if err != nil {
		t.Fatalf("open %s: %v", m.DSN(db), err)
	}
	defer pool.Close()
	conn, err := pool.Conn(ctx)
	if err != nil {
		t.Fatalf("connect %s: %v", m.DSN(db), err)
	}
	defer conn.Close()
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			t.Fatalf("on %s: %s: %v", m.DSN(db), s, err)
		}
	}
}

// Replica starts a new server and makes it a GTID replica of m
// (MASTER_USE_GTID=slave_pos from the start of m's binary log, so
// everything m has written is replayed), read_only, and waits until it has
// caught up with m's current GTID position.
func (m *MariaDB) Replica(t testing.TB) *MariaDB {
	t.Helper()
	r := NewMariaDB(t)
	r.Exec(t, "",
		"SET GLOBAL read_only = 1",
		fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1", m.Port),
		"START SLAVE")
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	src, err := m.open("")
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer src.Close()
	var pos string
	if err := src.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		t.Fatalf("primary's GTID position: %v", err)
	}
	dst, err := r.open("")
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer dst.Close()
	var res int
	if err := dst.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 30)", pos).Scan(&res); err != nil || res != 0 {
		t.Fatalf("replica did not reach %s (result %d): %v", pos, res, err)
	}
	return r
}

// ownedTempDir makes a temp dir outside the test's own (which is 0700 and
// root's when tests run as root) owned by owner when running as root, since
// neither postgres nor mariadbd will run as root. It is removed by
// t.Cleanup, after the servers in it (cleanups run last-in first-out).
func ownedTempDir(t testing.TB, prefix, owner string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("remove %s: %v", dir, err)
		}
	})
	if os.Geteuid() == 0 {
		uid, gid := lookupUser(t, owner)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("chown %s: %v", dir, err)
		}
	}
	return dir
}

func lookupUser(t testing.TB, name string) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		missing(t, "the OS user %s (%v); installing the server package creates it", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// serverAttr runs a server binary as owner when the test runs as root, and
// kills it if the test binary dies, so that no server outlives its test.
func serverAttr(t testing.TB, owner string) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true} // its own group: see process.stop
	if os.Geteuid() == 0 {
		uid, gid := lookupUser(t, owner)
		a.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	return a
}

// missing skips the test, or fails it in CI where everything must run.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI: missing "+format, args...)
	}
	t.Skipf("missing "+format, args...)
}

// freePort asks the kernel for a free port on 127.0.0.1. Another process
// may take it before the server binds it; a start then fails loudly.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor retries ready until it succeeds, the server exits, or
// startTimeout passes.
func waitFor(exit <-chan struct{}, ready func(context.Context) error) error {
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := ready(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exit:
			return errors.New("the server exited")
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Make the driver's own logger quiet: it prints "unexpected EOF" lines when
// a test kills a server under open connections, which is the point.
func init() { _ = mysql.SetLogger(nopLogger{}) }

type nopLogger struct{}

func (nopLogger) Print(...any) {}
