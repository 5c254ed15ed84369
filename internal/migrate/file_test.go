package migrate

import (
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/evolve"
)

const sample = `-- Lower-case titles for case-insensitive search.
-- handoff:expand
ALTER TABLE items ADD COLUMN title_lower text;

-- handoff:backfill table=items key=id batch=1000
UPDATE items SET title_lower = lower(title) WHERE id >= :lo AND id < :hi;

-- handoff:contract
ALTER TABLE items DROP COLUMN legacy_title;

-- handoff:rollback
ALTER TABLE items DROP COLUMN title_lower;
`

func TestParseSample(t *testing.T) {
	m, err := Parse("migrations/0007_title_lower.sql", sample)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "0007_title_lower" || m.Version != 7 {
		t.Errorf("name %q version %d", m.Name, m.Version)
	}
	for p, line := range map[Phase]int{Expand: 2, Backfill: 5, Contract: 8, Rollback: 11} {
		if s := m.Sections[p]; s == nil || s.Line != line || len(s.Statements) != 1 {
			t.Errorf("%s: %+v", p, s)
		}
	}
	b := m.Sections[Backfill]
	if b.Backfill.Table != "items" || b.Backfill.Key != "id" || b.Statements[0].Line != 6 {
		t.Errorf("backfill: %+v line %d", b.Backfill, b.Statements[0].Line)
	}
	if s := b.Backfill.Settings(evolve.DefaultSettings()); s.Batch != 1000 {
		t.Errorf("batch option: %d", s.Batch)
	}
	bound := b.Statements[0].Bind(func(n int) string { return "$" + string(rune('0'+n)) })
	if bound != "UPDATE items SET title_lower = lower(title) WHERE id >= $1 AND id < $2" {
		t.Errorf("bound: %s", bound)
	}
	// The checksum ignores trailing blanks, not content.
	m2, _ := Parse("0007_title_lower.sql", strings.ReplaceAll(sample, ";\n", ";  \n\n"))
	if m2.Sections[Expand].Checksum != m.Sections[Expand].Checksum {
		t.Error("blank lines changed the checksum")
	}
	m3, _ := Parse("0007_title_lower.sql", strings.Replace(sample, "title_lower text", "title_lower varchar", 1))
	if m3.Sections[Expand].Checksum == m.Sections[Expand].Checksum {
		t.Error("an edit kept the checksum")
	}
}

func TestParseForms(t *testing.T) {
	m, err := Parse("0001_init.sql", "CREATE TABLE a (id int);\nCREATE TABLE b (s text DEFAULT 'x;y', t text DEFAULT $$;$$);\n")
	if err != nil || len(m.Sections) != 1 || len(m.Sections[Expand].Statements) != 2 {
		t.Fatalf("a file without markers is all expand: %+v %v", m, err)
	}
	if st := m.Sections[Expand].Statements[1]; st.Line != 2 || !strings.HasSuffix(st.SQL, "$$;$$)") {
		t.Errorf("statement: %+v", st)
	}
	m, err = Parse("0002_cmd.sql", `-- handoff:backfill command="./evolve.py --from {lo} --to {hi}" range=1..250000 rate=500 throttle=off
`)
	if err != nil {
		t.Fatal(err)
	}
	b := m.Sections[Backfill].Backfill
	if b.Command != "./evolve.py --from {lo} --to {hi}" || b.Range == nil || b.Range.Hi != 250000 {
		t.Errorf("command backfill: %+v", b)
	}
	if s := b.Settings(evolve.DefaultSettings()); s.Duty != 100 || s.Rate != 0 {
		t.Errorf("options apply in name order, throttle=off after rate: %+v", s)
	}
	m, err = Parse("0003_idx.sql", "-- handoff:allow create-index\nCREATE INDEX a_x ON a (x);\nSELECT '::lo', 1::int;\n")
	if err != nil || strings.Join(m.Sections[Expand].Statements[0].Allow, ",") != "create-index" {
		t.Errorf("allow comment: %+v %v", m, err)
	}
	if st := m.Sections[Expand].Statements[1]; st.Uses("lo") {
		t.Error(":lo inside a string or a :: cast is not a parameter")
	}
	s, _ := Parse("x/0004_t.sql", "-- handoff:backfill table=t key=id lock_timeout=2s isolation=serializable\nUPDATE t SET a = 1 WHERE id >= :lo AND id < :hi;")
	if got := s.Sections[Backfill].Backfill.Settings(evolve.DefaultSettings()); got.LockTimeout != 2*time.Second || got.Isolation == 0 {
		t.Errorf("options: %+v", got)
	}
}

func TestParseErrorsNameFileAndLine(t *testing.T) {
	cases := []struct{ name, text, want string }{
		{"unknown phase", "-- handoff:expand\nSELECT 1;\n-- handoff:migrate\nSELECT 2;\n", `m/0001_x.sql:3: unknown phase "migrate"`},
		{"twice", "-- handoff:expand\nSELECT 1;\n-- handoff:expand\nSELECT 2;\n", `m/0001_x.sql:3: phase expand given twice (first at line 1)`},
		{"unterminated", "-- handoff:expand\nSELECT 1;\nSELECT 'abc;\nSELECT 3;\n", `m/0001_x.sql:3: unterminated string`},
		{"unterminated comment", "SELECT 1;\n/* note\n", `m/0001_x.sql:2: unterminated comment`},
		{"no bounds", "-- handoff:backfill table=items key=id\nUPDATE items SET a = 1;\n", `m/0001_x.sql:2: a backfill statement must bound its rows with :lo and :hi`},
		{"bounds outside backfill", "UPDATE items SET a = 1 WHERE id >= :lo;\n", `m/0001_x.sql:1: :lo and :hi belong in a backfill phase`},
		{"no key", "-- handoff:backfill table=items\nUPDATE items SET a = 1 WHERE id >= :lo AND id < :hi;\n", `m/0001_x.sql:1: backfill needs both table= and key=`},
		{"bad option", "-- handoff:backfill table=items key=id batch=many\nUPDATE items SET a = 1 WHERE id >= :lo AND id < :hi;\n", `m/0001_x.sql:1: backfill option batch: want a whole number`},
		{"unknown option", "-- handoff:backfill table=items key=id size=5\n", `m/0001_x.sql:1: backfill option size: unknown`},
		{"options on expand", "-- handoff:expand fast=yes\nSELECT 1;\n", `m/0001_x.sql:1: phase expand takes no options`},
		{"command with SQL", "-- handoff:backfill command=./x range=1..5\nSELECT 1;\n", `m/0001_x.sql:2: a command backfill takes no SQL statements`},
		{"empty", "-- nothing\n", `m/0001_x.sql: no SQL statement`},
		{"bad table", "-- handoff:backfill table=items;drop key=id\n", `m/0001_x.sql:1: backfill option table: want a plain identifier`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("m/0001_x.sql", c.text)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}
