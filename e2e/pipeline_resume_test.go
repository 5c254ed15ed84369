package e2e

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/handoff-dev/handoff/internal/deploy"
	_ "modernc.org/sqlite"
)

// TestPipelineStopsAndResumes: a migration step that fails stops the
// release pipeline with the app still serving its old release, status says
// where and why, and once the cause is fixed the same command resumes it.
// The backfill here is a command (for data SQL cannot reach) that fails
// until a file appears — say, a search index coming back.
func TestPipelineStopsAndResumes(t *testing.T) {
	dir := t.TempDir()
	db, root := filepath.Join(dir, "app.db"), filepath.Join(dir, "releases")
	ready, indexed := filepath.Join(dir, "index-is-up"), filepath.Join(dir, "indexed")
	if err := seedSQLite(db, 100); err != nil {
		t.Fatal(err)
	}
	makeAppRelease(t, root, "v1", db, 1, filepath.Join(dir, "jobs.log"), "")
	makeAppRelease(t, root, "v2", db, 2, filepath.Join(dir, "jobs.log"), fmt.Sprintf(`-- handoff:expand
ALTER TABLE items ADD COLUMN title_lower TEXT;

-- handoff:backfill command="test -e %s && echo {lo} {hi} >> %s" table=items key=id batch=50
`, ready, indexed))
	n := newNode(t, fmt.Sprintf(`  web:
    command: [bin/app]
    releases: %s
    instances: 2
    health: { path: /healthz, interval: 200ms }
`, root))
	appendConfig(t, n, fmt.Sprintf("database:\n  url: %s\n", db))
	n.must("deploy", "web", "--release", filepath.Join(root, "v1"))

	r := n.cli("deploy", "web", "--release", filepath.Join(root, "v2"))
	if r.code != 1 || !strings.Contains(r.stderr, "v1 still serves") {
		t.Fatalf("a failing backfill: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	st := n.appStatus("web")
	if st.Current != "v1" || st.Deploy.State != "failed" || failedStep(st.Deploy.Steps) != "backfill" {
		t.Fatalf("status after the failed backfill: current %s, deploy %+v", st.Current, st.Deploy)
	}
	checkRelease(t, n, "v1", 2)

	os.WriteFile(ready, nil, 0o644) // the cause is fixed
	out := n.must("deploy", "web", "--release", filepath.Join(root, "v2"))
	if !strings.Contains(out, "done") {
		t.Errorf("the same command should resume the pipeline:\n%s", out)
	}
	checkRelease(t, n, "v2", 2)
	if got := readFile(indexed); !strings.Contains(got, "1 ") || !strings.Contains(got, " 101") {
		t.Errorf("the resumed backfill should cover every key, 1 to 100:\n%s", got)
	}
}

// failedStep names the step a deploy failed at.
func failedStep(steps []*deploy.Step) string {
	for _, s := range steps {
		if s.State == deploy.Failed {
			return string(s.Name)
		}
	}
	return ""
}

// seedSQLite creates the sample app's items table (schema 1) with rows rows.
func seedSQLite(path string, rows int) error {
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.Exec(`CREATE TABLE items (id INTEGER PRIMARY KEY, title TEXT NOT NULL, legacy_title TEXT);
		WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
		INSERT INTO items (title, legacy_title) SELECT 'Item ' || i, 'Item ' || i FROM n`, rows)
	return err
}
