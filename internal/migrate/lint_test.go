package migrate

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestLintCorpus runs the lint over testdata/lint, one case per file. A
// case's header comments give what it expects:
//
//	-- want: rule-id, rule-id     (or: -- want: none)
//	-- phase: expand|backfill|contract   (default expand; ignored when the
//	                                     file has its own handoff: markers)
//	-- applied: expand[,backfill]   phases already run: not linted again
//	-- dialect: postgres|sqlite     (default postgres)
//	-- ref: where the expectation comes from (squawk, strong_migrations,
//	        Postgres's lock table)
//
// Findings are compared as a multiset of rule ids; the log gives the
// agree / missed / false-positive counts over the whole corpus.
func TestLintCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/lint/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no cases in testdata/lint")
	}
	var agree, missed, falsePos, pass int
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".sql")
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		h := header(string(text))
		if h["want"] == "" {
			t.Errorf("%s: no -- want: line", path)
			continue
		}
		body := string(text)
		if firstMarker(body) == "" {
			phase := h["phase"]
			if phase == "" {
				phase = "expand"
			}
			body = "-- handoff:" + phase + "\n" + body
		}
		m, err := Parse("testdata/lint/0001_"+name+".sql", body)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		dialect := h["dialect"]
		if dialect == "" {
			dialect = "postgres"
		}
		applied := list(h["applied"])
		var got []string
		for _, f := range LintPending([]*Migration{m}, dialect, nil, func(_ *Migration, p Phase) bool {
			return slices.Contains(applied, string(p))
		}) {
			got = append(got, f.Rule)
			if f.Message == "" || f.Safe == "" {
				t.Errorf("%s: %s has no message or no safe form", path, f.Rule)
			}
		}
		want := list(h["want"])
		if len(want) == 1 && want[0] == "none" {
			want = nil
		}
		a, mi, fp := compare(want, got)
		agree, missed, falsePos = agree+a, missed+mi, falsePos+fp
		if mi == 0 && fp == 0 {
			pass++
		} else {
			t.Errorf("%s: want [%s], got [%s]", path, strings.Join(want, ", "), strings.Join(got, ", "))
		}
	}
	t.Logf("lint corpus: %d cases, %d pass; findings: %d agree, %d missed, %d false positive",
		len(files), pass, agree, missed, falsePos)
}

// header reads the "-- key: value" comment lines at the top of a case.
func header(text string) map[string]string {
	h := map[string]string{}
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "--") {
			if l == "" {
				continue
			}
			break
		}
		k, v, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(l, "--")), ":")
		if ok && !strings.Contains(k, " ") && k != "handoff" {
			h[k] = strings.TrimSpace(v)
		}
	}
	return h
}

// firstMarker returns the first line that is a handoff phase marker, or "".
func firstMarker(text string) string {
	for _, l := range strings.Split(text, "\n") {
		if sub := marker.FindStringSubmatch(l); sub != nil && sub[1] != "allow" {
			return l
		}
	}
	return ""
}

func list(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		out = append(out, f)
	}
	return out
}

// compare counts the rule ids found in both (as multisets), only wanted,
// and only got.
func compare(want, got []string) (agree, missed, falsePos int) {
	left := map[string]int{}
	for _, w := range want {
		left[w]++
	}
	for _, g := range got {
		if left[g] > 0 {
			left[g]--
			agree++
		} else {
			falsePos++
		}
	}
	for _, n := range left {
		missed += n
	}
	return agree, missed, falsePos
}

// TestLintPerPhase: the "created in this migration" exemption does not
// leak from expand into contract, and phases already applied are not
// linted again, though what they validated still counts.
func TestLintPerPhase(t *testing.T) {
	m, err := Parse("m/0010_x.sql", `-- handoff:expand
CREATE TABLE fresh (id int, v int);
CREATE INDEX fresh_v ON fresh (v);
ALTER TABLE items ADD CONSTRAINT items_t_nn CHECK (title IS NOT NULL) NOT VALID;
ALTER TABLE items VALIDATE CONSTRAINT items_t_nn;
CREATE INDEX items_t ON items (title);
-- handoff:contract
CREATE INDEX fresh_w ON fresh (v);
ALTER TABLE items ALTER COLUMN title SET NOT NULL;
`)
	if err != nil {
		t.Fatal(err)
	}
	rules := func(fs []*Finding) string {
		var s []string
		for _, f := range fs {
			s = append(s, f.Rule+"@"+strings.TrimPrefix(strings.SplitN(f.Error(), ": ", 2)[0], "m/0010_x.sql:"))
		}
		return strings.Join(s, " ")
	}
	if got, want := rules(Lint([]*Migration{m}, "postgres", nil)), "create-index@6 create-index@8"; got != want {
		t.Errorf("all phases: got %q, want %q", got, want)
	}
	expandRan := func(_ *Migration, p Phase) bool { return p == Expand }
	if got, want := rules(LintPending([]*Migration{m}, "postgres", nil, expandRan)), "create-index@8"; got != want {
		t.Errorf("expand applied: got %q, want %q", got, want)
	}
}

// TestLintRulesDocumented: every rule has a row in docs/migrations.md's
// lint table and at least one corpus case that expects it.
func TestLintRulesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/migrations.md")
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("testdata/lint/*.sql")
	wanted := map[string]bool{}
	for _, f := range files {
		text, _ := os.ReadFile(f)
		for _, r := range list(header(string(text))["want"]) {
			wanted[r] = true
		}
	}
	for _, id := range LintRules {
		if !strings.Contains(string(doc), "| `"+id+"` |") {
			t.Errorf("rule %s has no row in docs/migrations.md", id)
		}
		if !wanted[id] {
			t.Errorf("rule %s: no case in testdata/lint expects it", id)
		}
	}
}
