package migrate

import (
	"context"
	"strings"
	"testing"
)

// splitCases are statements that hold semicolons or quotes outside the
// plain forms, each as psql (PostgreSQL) or sqlite3 (SQLite) reads it:
// the text and the statements it is.
var splitCases = []struct {
	name string
	text string
	want []string
}{
	{"a SQL-standard function body (PostgreSQL 14+)",
		"CREATE FUNCTION add1(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN a > 0 THEN a + 1 ELSE 1 END;\n  SELECT a + 1;\nEND;\nSELECT 2;",
		[]string{"CREATE FUNCTION add1(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN a > 0 THEN a + 1 ELSE 1 END;\n  SELECT a + 1;\nEND", "SELECT 2"}},
	{"a procedure, created or replaced, lower case",
		"create or replace procedure p() language sql begin atomic insert into t values (1); insert into t values (2); end; select 1",
		[]string{"create or replace procedure p() language sql begin atomic insert into t values (1); insert into t values (2); end", "select 1"}},
	{"a SQLite trigger",
		"CREATE TEMP TRIGGER IF NOT EXISTS t_ins AFTER INSERT ON t BEGIN\n  UPDATE t SET n = n + 1;\n  INSERT INTO log VALUES (new.id);\nEND;\nSELECT 1;",
		[]string{"CREATE TEMP TRIGGER IF NOT EXISTS t_ins AFTER INSERT ON t BEGIN\n  UPDATE t SET n = n + 1;\n  INSERT INTO log VALUES (new.id);\nEND", "SELECT 1"}},
	{"BEGIN as a transaction, not a body",
		"BEGIN; CREATE TABLE t (id int); COMMIT;",
		[]string{"BEGIN", "CREATE TABLE t (id int)", "COMMIT"}},
	{"a word that ends in BEGIN or END is no block",
		"CREATE FUNCTION f(legend text, beginning int) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$; SELECT 2;",
		[]string{"CREATE FUNCTION f(legend text, beginning int) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$", "SELECT 2"}},
	{"a semicolon in parentheses (a rule's actions)",
		"CREATE RULE r AS ON INSERT TO a DO ALSO (INSERT INTO b VALUES (1); INSERT INTO b VALUES (2)); SELECT 1",
		[]string{"CREATE RULE r AS ON INSERT TO a DO ALSO (INSERT INTO b VALUES (1); INSERT INTO b VALUES (2))", "SELECT 1"}},
	{"a string after a word that ends in e takes no backslash escape",
		`SELECT date'2024-01-01' WHERE 'a' LIKE'%\'; SELECT 2;`,
		[]string{`SELECT date'2024-01-01' WHERE 'a' LIKE'%\'`, "SELECT 2"}},
	{"an E-string does",
		`SELECT E'it\'s; fine', e'\\'; SELECT 2`,
		[]string{`SELECT E'it\'s; fine', e'\\'`, "SELECT 2"}},
	{"$ inside an identifier opens no dollar quote",
		"SELECT a$b$c FROM t; SELECT $x$;$x$;",
		[]string{"SELECT a$b$c FROM t", "SELECT $x$;$x$"}},
}

func TestSplitForms(t *testing.T) {
	for _, c := range splitCases {
		stmts, u := splitStatements(c.text, 1)
		if u != nil {
			t.Errorf("%s: unterminated %s at line %d", c.name, u.what, u.line)
			continue
		}
		var got []string
		for _, s := range stmts {
			got = append(got, s.SQL)
		}
		if strings.Join(got, "\x00") != strings.Join(c.want, "\x00") {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

// TestSplitFormsRun applies, on the real databases, migrations whose
// statements hold semicolons in a body: a SQL-standard function body on
// PostgreSQL, a trigger on SQLite. Split at those semicolons, each
// statement would be a syntax error.
func TestSplitFormsRun(t *testing.T) {
	files := map[string]string{
		"postgres": `CREATE TABLE n (id int PRIMARY KEY, v int);
CREATE FUNCTION bump(a int) RETURNS int LANGUAGE sql
BEGIN ATOMIC
  SELECT CASE WHEN a > 0 THEN a + 1 ELSE 1 END;
END;
CREATE PROCEDURE seed() LANGUAGE sql
BEGIN ATOMIC
  INSERT INTO n VALUES (1, bump(1));
  INSERT INTO n VALUES (2, bump(-5));
END;
CALL seed();
`,
		"sqlite": `CREATE TABLE n (id int PRIMARY KEY, v int);
CREATE TABLE log (id int);
CREATE TRIGGER n_ins AFTER INSERT ON n BEGIN
  INSERT INTO log VALUES (new.id);
  UPDATE n SET v = CASE WHEN new.id > 1 THEN 1 ELSE 2 END WHERE id = new.id;
END;
INSERT INTO n VALUES (1, 0);
INSERT INTO n VALUES (2, 0);
`,
	}
	for name, url := range backends {
		t.Run(name, func(t *testing.T) {
			m := openM(t, url(t), writeDir(t, map[string]string{"0001_forms.sql": files[name]}))
			if err := m.Expand(context.Background()); err != nil {
				t.Fatal(err)
			}
			var sum int
			if err := m.Dialect().DB().QueryRow(`SELECT sum(v) FROM n`).Scan(&sum); err != nil || sum != 3 {
				t.Fatalf("the body ran as one statement: sum(v) = %d, %v", sum, err)
			}
		})
	}
}
