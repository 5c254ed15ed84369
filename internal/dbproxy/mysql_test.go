package dbproxy

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// mariaDB returns the address of the test MariaDB (HANDOFF_TEST_MYSQL,
// else 127.0.0.1:3306, user root without password) and a fresh database
// on it, dropped afterwards. Without a server the test skips — unless CI
// is set, where a missing service fails it.
func mariaDB(t *testing.T) (addr, db string) {
	t.Helper()
	addr = os.Getenv("HANDOFF_TEST_MYSQL")
	if addr == "" {
		addr = "127.0.0.1:3306"
	}
	admin, err := sql.Open("mysql", "root@tcp("+addr+")/")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no MariaDB at %s: %v", addr, err)
		}
		t.Skipf("no MariaDB at %s (%v); set HANDOFF_TEST_MYSQL=host:port (user root, no password) to run this test", addr, err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	db = "handoff_dbproxy_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("mysql", "root@tcp("+addr+")/")
		if err == nil {
			admin.Exec("DROP DATABASE IF EXISTS " + db)
			admin.Close()
		}
	})
	return addr, db
}

func myEndpoint(t *testing.T, primary string, opts Options) (*Endpoint, string) {
	t.Helper()
	opts.Kind, opts.Name, opts.Primary = MySQL, "my", primary
	return serveEndpoint(t, opts)
}

func openMy(t *testing.T, addr, db string) *sql.DB {
	t.Helper()
	d, err := sql.Open("mysql", fmt.Sprintf("root@tcp(%s)/%s?timeout=5s", addr, db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestMySQLPauseRepointUnderLoad: many go-sql-driver/mysql clients run
// two-row transactions through the endpoint in front of the real MariaDB;
// Pause returns only when none is open on the server and none commits
// while paused; Repoint to a SECOND MariaDB server (a temp one); after
// Resume the clients' next transactions run there, no transaction is split
// between the servers, a long-lived prepared statement still works, and
// no client saw an error.
func TestMySQLPauseRepointUnderLoad(t *testing.T) {
	addr, db := mariaDB(t)
	second := testdb.NewMariaDB(t)
	second.Exec(t, "", "CREATE DATABASE "+db)
	const schema = "CREATE TABLE tx (client INT, seq INT, part INT, PRIMARY KEY (client, seq, part)) ENGINE=InnoDB"
	second.Exec(t, db, schema)
	direct := openMy(t, addr, db)
	if _, err := direct.Exec(schema); err != nil {
		t.Fatal(err)
	}
	e, through := myEndpoint(t, addr, Options{})
	pool := openMy(t, through, db)
	pool.SetMaxOpenConns(12)
	pool.SetMaxIdleConns(12)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	count, err := pool.PrepareContext(ctx, "SELECT count(*) FROM tx WHERE client = ?")
	if err != nil {
		t.Fatal(err)
	}
	defer count.Close()

	const clients = 12
	var (
		commits, failures atomic.Int64
		stop              atomic.Bool
		mu                sync.Mutex
		firstErr          error
	)
	one := func(client, seq int) error {
		tx, err := pool.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for part := 1; part <= 2; part++ {
			if _, err := tx.ExecContext(ctx, "INSERT INTO tx VALUES (?, ?, ?)", client, seq, part); err != nil {
				return err
			}
		}
		var n int
		if err := tx.StmtContext(ctx, count).QueryRowContext(ctx, client).Scan(&n); err != nil {
			return err
		}
		return tx.Commit()
	}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; seq < 5000 && !stop.Load(); seq++ {
				if err := one(c, seq); err != nil {
					failures.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("client %d seq %d: %w", c, seq, err)
					}
					mu.Unlock()
					return
				}
				commits.Add(1)
			}
		}()
	}
	waitFor(t, 15*time.Second, func() bool { return commits.Load() >= 200 })
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	start := time.Now()
	if err := e.Pause(pctx); err != nil {
		t.Fatalf("pause: %v", err)
	}
	pcancel()
	t.Logf("paused in %v after %d commits", time.Since(start), commits.Load())
	var open int
	if err := direct.QueryRow(`SELECT count(*) FROM information_schema.innodb_trx t
		JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id WHERE p.db = ?`, db).Scan(&open); err != nil {
		t.Fatal(err)
	}
	if open != 0 {
		t.Fatalf("paused, but the server shows %d open transactions", open)
	}
	rows := func(d *sql.DB) int {
		var n int
		if err := d.QueryRow("SELECT count(*) FROM tx").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := rows(direct)
	time.Sleep(300 * time.Millisecond)
	if after := rows(direct); after != before {
		t.Fatalf("%d rows committed while paused", after-before)
	}
	if err := e.Repoint(second.Addr()); err != nil {
		t.Fatal(err)
	}
	e.Resume()
	atRepoint := commits.Load()
	waitFor(t, 15*time.Second, func() bool { return commits.Load() >= atRepoint+300 })
	stop.Store(true)
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d client errors; the first: %v", failures.Load(), firstErr)
	}
	// The long-lived prepared statement moved too.
	var n int
	if err := count.QueryRowContext(ctx, 0).Scan(&n); err != nil {
		t.Fatalf("prepared statement after the move: %v", err)
	}
	secondDB := openMy(t, second.Addr(), db)
	// Every transaction after the repoint ran on the second server.
	if n := rows(direct); n != before {
		t.Fatalf("%d rows on the first server after the repoint", n-before)
	}
	onFirst, onSecond := rows(direct), rows(secondDB)
	st := e.Stats()
	t.Logf("commits %d: %d rows on the first server, %d on the second; %+v", commits.Load(), onFirst, onSecond, st)
	if onSecond == 0 || st.Moved == 0 || st.MoveFailures != 0 {
		t.Fatalf("sessions did not move: %d rows on the second server, stats %+v", onSecond, st)
	}
	if int64(onFirst+onSecond) != 2*commits.Load() {
		t.Fatalf("%d rows for %d commits", onFirst+onSecond, commits.Load())
	}
	// No transaction split: each (client, seq) has both its rows on one
	// server and none on the other.
	for name, d := range map[string]*sql.DB{"first": direct, "second": secondDB} {
		var split int
		if err := d.QueryRow("SELECT count(*) FROM (SELECT client, seq FROM tx GROUP BY client, seq HAVING count(*) <> 2) s").Scan(&split); err != nil {
			t.Fatal(err)
		}
		if split != 0 {
			t.Fatalf("%d transactions split on the %s server", split, name)
		}
	}
}

// TestMySQLPauseWaitsForTransaction: a transaction open through the
// endpoint keeps Pause waiting (it gives up with its ctx), a new
// transaction waits while paused, Resume releases it.
func TestMySQLPauseWaitsForTransaction(t *testing.T) {
	addr, db := mariaDB(t)
	e, through := myEndpoint(t, addr, Options{})
	pool := openMy(t, through, db)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := pool.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("SELECT 1"); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer pcancel()
	if err := e.Pause(pctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("pause with an open transaction: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		var one int
		done <- pool.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	}()
	select {
	case err := <-done:
		t.Fatalf("a new transaction ran while paused: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := e.Pause(ctx); err != nil {
		t.Fatalf("pause once the transaction ended: %v", err)
	}
	e.Resume()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestMySQLMalformedClient: a command packet out of sequence or of an
// unknown command gets an ERR and the connection is closed; nothing is
// forwarded, not even a valid query behind it.
func TestMySQLMalformedClient(t *testing.T) {
	addr, db := mariaDB(t)
	direct := openMy(t, addr, db)
	if _, err := direct.Exec("CREATE TABLE seen (x INT)"); err != nil {
		t.Fatal(err)
	}
	_, through := myEndpoint(t, addr, Options{})
	insert := myPacketBytes(0, append([]byte{myCmdQuery}, "INSERT INTO seen VALUES (1)"...))
	for name, garbage := range map[string][]byte{
		"out of sequence":  myPacketBytes(5, []byte{myCmdQuery, 'x'}),
		"empty command":    myPacketBytes(0, nil),
		"binlog dump":      myPacketBytes(0, []byte{0x12, 0, 0, 0, 0}),
		"change user":      myPacketBytes(0, []byte{0x11, 'r', 'o', 'o', 't', 0}),
		"an HTTP request":  []byte("GET / HTTP/1.1\r\n\r\n"),
		"unknown 0xee cmd": myPacketBytes(0, []byte{0xee}),
	} {
		t.Run(name, func(t *testing.T) {
			c := rawMyLogin(t, through, db)
			defer c.Close()
			c.Write(append(append([]byte{}, garbage...), insert...))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("connection not closed: %v", err)
			}
			if len(got) < 5 || got[4] != 0xff {
				t.Fatalf("want an ERR packet, got %q", got)
			}
			var n int
			if err := direct.QueryRow("SELECT count(*) FROM seen").Scan(&n); err != nil || n != 0 {
				t.Fatalf("rows after malformed input: %d, %v", n, err)
			}
		})
	}
}

// rawMyLogin logs in through the endpoint by hand (root, no password) and
// returns the connection after the OK.
func rawMyLogin(t *testing.T, addr, db string) net.Conn {
	t.Helper()
	c, _ := rawMyLoginID(t, addr, db)
	return c
}

// rawMyLoginID is rawMyLogin, with the connection id of the handshake.
func rawMyLoginID(t *testing.T, addr, db string) (net.Conn, uint32) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := newMyReader(c)
	p, err := r.next(0)
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseHandshake(p.payload)
	if err != nil {
		t.Fatal(err)
	}
	caps := uint32(capProtocol41|capSecureConnection|capPluginAuth|capConnectWithDB|capLongPassword) & h.caps
	resp := []byte{byte(caps), byte(caps >> 8), byte(caps >> 16), byte(caps >> 24), 0, 0, 0, 1, 45}
	resp = append(resp, make([]byte, 23)...)
	resp = append(resp, "root\x00\x00"...)
	resp = append(append(resp, db...), 0)
	resp = append(resp, "mysql_native_password\x00"...)
	c.Write(myPacketBytes(1, resp))
	if p, err = r.next(0); err != nil || p.first() != 0 {
		t.Fatalf("login: %v %q", err, p.payload)
	}
	c.SetDeadline(time.Time{})
	return c, h.thread
}

// TestMySQLMoveFails: a session that cannot log in on the new server is
// told so and closed between transactions; database/sql opens another.
func TestMySQLMoveFails(t *testing.T) {
	addr, db := mariaDB(t)
	e, through := myEndpoint(t, addr, Options{ConnectTimeout: time.Second})
	pool := openMy(t, through, db)
	pool.SetMaxOpenConns(1)
	if err := pool.Ping(); err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	if err := e.Repoint(dead); err != nil {
		t.Fatal(err)
	}
	_, err := pool.Exec("SELECT 1")
	var myErr *mysql.MySQLError
	if err == nil || errors.As(err, &myErr) && myErr.Number != 2013 {
		t.Fatalf("query after a failed move: %v", err)
	}
	if st := e.Stats(); st.MoveFailures == 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestMySQLSessionStateMoves: what the endpoint sees of a MySQL session
// comes along when it moves — the database chosen with USE, autocommit
// turned off, a statement prepared before the move — and an error inside
// a transaction keeps it open (not between transactions).
func TestMySQLSessionStateMoves(t *testing.T) {
	addr, db := mariaDB(t)
	_, other := mariaDB(t)
	e, through := myEndpoint(t, addr, Options{})
	second := newRelay(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := openMy(t, through, db)
	conn, err := pool.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"CREATE TABLE " + other + ".t (x INT PRIMARY KEY) ENGINE=InnoDB", "USE " + other, "SET autocommit = 0"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	stmt, err := conn.PrepareContext(ctx, "SELECT count(*) FROM t")
	if err != nil {
		t.Fatal(err)
	}
	// autocommit off: every statement opens a transaction; an error in it
	// leaves it open.
	if _, err := conn.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO t VALUES (1)"); err == nil {
		t.Fatal("a duplicate key was accepted")
	}
	pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if err := e.Pause(pctx); err == nil {
		t.Fatal("pause returned while a transaction was open after an error in it")
	}
	pcancel()
	e.Resume()
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if err := e.Repoint(second.addr); err != nil {
		t.Fatal(err)
	}
	var name string
	if err := conn.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&name); err != nil || name != other {
		t.Fatalf("database after the move: %q, %v", name, err)
	}
	if second.conns.Load() != 1 {
		t.Fatalf("the session did not move: relay %d", second.conns.Load())
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := stmt.QueryRowContext(ctx).Scan(&n); err != nil || n != 1 {
		t.Fatalf("after the move, autocommit off and the rollback: %d rows (want 1), %v", n, err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
}

// A client that sends a statement's parameter types only on its first
// execute after binding (libmysqlclient, mysqlnd, Connector/C; here raw)
// executes it again after its session moved: the statement is prepared
// again on the new server, which has never seen its types, and the
// endpoint gives that first execute the types the client bound before.
func TestMySQLExecuteWithoutTypesAfterAMove(t *testing.T) {
	addr, db := mariaDB(t)
	e, through := myEndpoint(t, addr, Options{})
	second := newRelay(t, addr)
	c := rawMyLogin(t, through, db)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := newMyReader(c)
	c.Write(myPacketBytes(0, append([]byte{myCmdStmtPrepare}, "SELECT ? + 1"...)))
	p, err := r.next(0)
	if err != nil || p.first() != 0 {
		t.Fatalf("prepare: %v %q", err, p.payload)
	}
	id := binary.LittleEndian.Uint32(p.payload[1:])
	cols, params := binary.LittleEndian.Uint16(p.payload[5:]), binary.LittleEndian.Uint16(p.payload[7:])
	for range int(params) + 1 + int(cols) + 1 { // definitions, each list ended by EOF
		if _, err := r.next(0); err != nil {
			t.Fatal(err)
		}
	}
	execute := func(withTypes bool, v uint64) {
		t.Helper()
		ex := binary.LittleEndian.AppendUint32([]byte{myCmdStmtExecute}, id)
		ex = binary.LittleEndian.AppendUint32(append(ex, 0), 1) // no cursor, one iteration
		ex = append(ex, 0)                                      // null bitmap: none null
		if withTypes {
			ex = append(ex, 1, 0x08, 0) // new params bound: LONGLONG, signed
		} else {
			ex = append(ex, 0)
		}
		c.Write(myPacketBytes(0, binary.LittleEndian.AppendUint64(ex, v)))
		for eofs := 0; eofs < 2; { // column count, definition, EOF, row, EOF
			p, err := r.next(0)
			if err != nil {
				t.Fatal(err)
			}
			if p.first() == 0xff {
				t.Fatalf("execute (types sent: %v): %s", withTypes, errText(p.payload))
			}
			if p.first() == 0xfe && len(p.payload) < 9 {
				eofs++
			}
		}
	}
	execute(true, 41)
	execute(false, 1) // the types are the server's to remember now
	if err := e.Repoint(second.addr); err != nil {
		t.Fatal(err)
	}
	execute(false, 2)
	if second.conns.Load() != 1 {
		t.Fatalf("the session did not move: relay %d", second.conns.Load())
	}
}

// A client's KILL names a session by the connection id its handshake gave
// (the mysql client's Ctrl-C, Connector/J's query timeout). The endpoint
// gives its own ids and translates them to the session's server id where
// it is now: after a move the old number would name another session, or
// none. An id that names no session kills nothing.
func TestMySQLKillNamesTheClientsSession(t *testing.T) {
	addr, db := mariaDB(t)
	e, through := myEndpoint(t, addr, Options{})
	second := newRelay(t, addr)
	sleeper, id := rawMyLoginID(t, through, db)
	defer sleeper.Close()
	if id < myThreadBase {
		t.Fatalf("the client's connection id %d is the server's, not the endpoint's", id)
	}
	killer := openMy(t, through, db)
	killer.SetMaxOpenConns(1)
	r := newMyReader(sleeper)
	sleepKilled := func() {
		t.Helper()
		sleeper.SetDeadline(time.Now().Add(10 * time.Second))
		sleeper.Write(myPacketBytes(0, append([]byte{myCmdQuery}, "SELECT SLEEP(8)"...)))
		time.Sleep(300 * time.Millisecond)
		start := time.Now()
		if _, err := killer.Exec(fmt.Sprintf("KILL QUERY %d", id)); err != nil {
			t.Fatalf("KILL QUERY %d: %v", id, err)
		}
		for eofs := 0; eofs < 2; { // column count, definition, EOF, row, EOF
			p, err := r.next(0)
			if err != nil {
				t.Fatal(err)
			}
			if p.first() == 0xff { // MySQL answers an interrupted SLEEP with an error
				break
			}
			if p.first() == 0xfe && len(p.payload) < 9 {
				eofs++
			}
		}
		if took := time.Since(start); took > 4*time.Second {
			t.Fatalf("the KILL did not reach the sleeping query (it ended %v after)", took)
		}
	}
	sleepKilled()
	if err := e.Repoint(second.addr); err != nil {
		t.Fatal(err)
	}
	sleepKilled() // both sessions moved: the id names the new server session
	if second.conns.Load() != 2 {
		t.Fatalf("sessions on the new server: %d, want 2", second.conns.Load())
	}
	var me *mysql.MySQLError
	if _, err := killer.Exec(fmt.Sprintf("KILL QUERY %d", id+1000)); !errors.As(err, &me) || me.Number != 1094 {
		t.Fatalf("KILL of an id no session has: %v; want error 1094", err)
	}
}
