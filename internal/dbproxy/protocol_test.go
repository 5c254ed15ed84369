package dbproxy

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/testdb"
	"github.com/jackc/pgx/v5"
)

// TestPGProtocolPaths drives what the endpoint streams or counts
// differently through the real server: messages longer than it reads
// whole (a 3 MB parameter, a 3 MB row), COPY FROM STDIN, a pipelined
// batch, and LISTEN/NOTIFY delivered while the connection is idle; after
// each the connection is between transactions (a pause returns at once).
func TestPGProtocolPaths(t *testing.T) {
	dbURL := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, through := pgEndpoint(t, dbURL, Options{})
	conn, err := pgx.Connect(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	between := func(what string) {
		t.Helper()
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		defer pcancel()
		if err := e.Pause(pctx); err != nil {
			t.Fatalf("after %s the connection is not between transactions: %v (%+v)", what, err, e.Stats())
		}
		e.Resume()
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE big (id int, body text)"); err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("handoff ", 3<<20/8)
	if _, err := conn.Exec(ctx, "INSERT INTO big VALUES (1, $1)", body); err != nil {
		t.Fatalf("a 3 MB parameter: %v", err)
	}
	var got string
	if err := conn.QueryRow(ctx, "SELECT body FROM big WHERE id = 1").Scan(&got); err != nil || got != body {
		t.Fatalf("a 3 MB row: %d bytes, %v", len(got), err)
	}
	between("a 3 MB parameter and row")

	rows := make([][]any, 5000)
	for i := range rows {
		rows[i] = []any{i + 2, fmt.Sprint("row ", i)}
	}
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"big"}, []string{"id", "body"}, pgx.CopyFromRows(rows))
	if err != nil || n != 5000 {
		t.Fatalf("COPY FROM: %d rows, %v", n, err)
	}
	between("COPY FROM STDIN")

	batch := &pgx.Batch{}
	for i := range 50 {
		batch.Queue("SELECT $1::int", i)
	}
	if err := conn.SendBatch(ctx, batch).Close(); err != nil {
		t.Fatalf("pipelined batch: %v", err)
	}
	between("a pipelined batch")

	if _, err := conn.Exec(ctx, "LISTEN handoff_test"); err != nil {
		t.Fatal(err)
	}
	other, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, err := other.Exec(ctx, "NOTIFY handoff_test, 'hello'"); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	note, err := conn.WaitForNotification(wctx)
	if err != nil || note.Payload != "hello" {
		t.Fatalf("notification while idle: %+v, %v", note, err)
	}
	between("a notification")
}

// TestMySQLProtocolPaths: the same for MariaDB — a 3 MB value both ways
// (packets longer than the endpoint reads whole), several result sets of
// one multi-statement query, a stored procedure's results, LOAD DATA
// LOCAL INFILE; after each the connection is between transactions.
func TestMySQLProtocolPaths(t *testing.T) {
	addr, db := mariaDB(t)
	e, through := myEndpoint(t, addr, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool, err := sql.Open("mysql", fmt.Sprintf("root@tcp(%s)/%s?timeout=5s&multiStatements=true&allowAllFiles=true&maxAllowedPacket=0", through, db))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	pool.SetMaxOpenConns(1)
	between := func(what string) {
		t.Helper()
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		defer pcancel()
		if err := e.Pause(pctx); err != nil {
			t.Fatalf("after %s the connection is not between transactions: %v (%+v)", what, err, e.Stats())
		}
		e.Resume()
	}
	var rows *sql.Rows
	if _, err := pool.Exec("CREATE TABLE big (id INT, body LONGTEXT)"); err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("handoff ", 3<<20/8)
	if _, err := pool.Exec("INSERT INTO big VALUES (1, ?)", body); err != nil {
		t.Fatalf("a 3 MB parameter: %v", err)
	}
	var got string
	if err := pool.QueryRow("SELECT body FROM big WHERE id = 1").Scan(&got); err != nil || got != body {
		t.Fatalf("a 3 MB row: %d bytes, %v", len(got), err)
	}
	between("a 3 MB value")

	rows, err = pool.QueryContext(ctx, "SELECT 1; SELECT 2, 3; UPDATE big SET id = 1 WHERE id = 1; SELECT 4")
	if err != nil {
		t.Fatal(err)
	}
	sets := 0
	for {
		for rows.Next() {
		}
		sets++
		if !rows.NextResultSet() {
			break
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("multiple results: %v", err)
	}
	rows.Close()
	between(fmt.Sprintf("a multi-statement query (%d result sets)", sets))

	if _, err := pool.Exec("CREATE PROCEDURE two() BEGIN SELECT 1; SELECT 2; END"); err != nil {
		t.Fatal(err)
	}
	rows, err = pool.QueryContext(ctx, "CALL two()")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() || rows.NextResultSet() {
	}
	rows.Close()
	between("a procedure's results")

	file := t.TempDir() + "/rows.csv"
	var csv strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&csv, "%d,row %d\n", i+10, i)
	}
	writeFile(t, file, csv.String())
	res, err := pool.Exec(fmt.Sprintf("LOAD DATA LOCAL INFILE '%s' INTO TABLE big FIELDS TERMINATED BY ','", file))
	if err != nil {
		t.Fatalf("LOAD DATA LOCAL INFILE: %v", err)
	}
	if n, _ := res.RowsAffected(); n != 1000 {
		t.Fatalf("LOAD DATA LOCAL INFILE: %d rows", n)
	}
	between("LOAD DATA LOCAL INFILE")
}
