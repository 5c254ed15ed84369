package migrate

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Phase is one step of a migration.
type Phase string

// The phases, in the order a release runs them. Rollback is not run by a
// release: it undoes expand when a release is abandoned before contract.
const (
	Expand   Phase = "expand"
	Backfill Phase = "backfill"
	Contract Phase = "contract"
	Rollback Phase = "rollback"
)

// Phases lists the phases that a migration is applied in, in order.
var Phases = []Phase{Expand, Backfill, Contract}

// Migration is one file: one logical change in up to four sections.
type Migration struct {
	// Name is the file name without .sql (0007_title_lower); it names the
	// migration in the history table, in the CLI and in evolve.
	Name    string
	Version int64
	Path    string
	// Sections holds the phases the file has.
	Sections map[Phase]*Section
}

// Section is the text of one phase.
type Section struct {
	Phase Phase
	// Line is the line of the phase's marker, or 1 for a file without one.
	Line       int
	Statements []Statement
	// Checksum is the SHA-256 of the section's text, blank lines at its ends
	// and trailing spaces ignored.
	Checksum string
	// Backfill is set for the backfill phase.
	Backfill *BackfillSpec
}

// Has reports whether the migration has the phase.
func (m *Migration) Has(p Phase) bool { return m.Sections[p] != nil }

// FileError is a problem in a migration file, at a line.
type FileError struct {
	File string
	Line int
	Msg  string
}

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

var (
	fileName = regexp.MustCompile(`^(\d+)_[A-Za-z0-9_.-]+\.sql$`)
	marker   = regexp.MustCompile(`^\s*--\s*handoff:([A-Za-z_]*)(.*)$`)
)

// Load reads every migration of the given directories, ordered by version.
// A release may carry its own directory beside the shared one; a migration
// that is in two of them must be the same file.
func Load(dirs ...string) ([]*Migration, error) {
	byName := map[string]*Migration{}
	var all []*Migration
	var errs []error
	for _, dir := range dirs {
		ms, err := loadDir(dir)
		if err != nil {
			errs = append(errs, err)
		}
		for _, m := range ms {
			if prev, ok := byName[m.Name]; ok {
				if !sameSections(prev, m) {
					errs = append(errs, &FileError{File: m.Path, Msg: fmt.Sprintf("differs from %s of the same name", prev.Path)})
				}
				continue
			}
			byName[m.Name] = m
			all = append(all, m)
		}
	}
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].Version != all[j].Version {
			return all[i].Version < all[j].Version
		}
		return all[i].Name < all[j].Name
	})
	for i := 1; i < len(all); i++ {
		if all[i].Version == all[i-1].Version {
			errs = append(errs, &FileError{File: all[i].Path, Msg: fmt.Sprintf("version %d is also %s", all[i].Version, all[i-1].Path)})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return all, nil
}

func sameSections(a, b *Migration) bool {
	if len(a.Sections) != len(b.Sections) {
		return false
	}
	for p, s := range a.Sections {
		if o := b.Sections[p]; o == nil || o.Checksum != s.Checksum {
			return false
		}
	}
	return true
}

func loadDir(dir string) ([]*Migration, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []*Migration
	var errs []error
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if !fileName.MatchString(e.Name()) {
			errs = append(errs, &FileError{File: path, Msg: "a migration file is named NNNN_title.sql (a number, then _)"})
			continue
		}
		text, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("read migration: %w", err))
			continue
		}
		m, err := Parse(path, string(text))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ms = append(ms, m)
	}
	return ms, errors.Join(errs...)
}

// Parse parses one migration file's text. Errors are *FileError values that
// name the file and line.
func Parse(path, text string) (*Migration, error) {
	base := filepath.Base(path)
	name := strings.TrimSuffix(base, ".sql")
	m := &Migration{Name: name, Path: path, Sections: map[Phase]*Section{}}
	if sub := fileName.FindStringSubmatch(base); sub != nil {
		m.Version, _ = strconv.ParseInt(sub[1], 10, 64)
	}
	fail := func(line int, format string, args ...any) error {
		return &FileError{File: path, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	chunks, err := sectionChunks(text, fail)
	if err != nil {
		return nil, err
	}
	for _, c := range chunks {
		s, err := c.section(fail)
		if err != nil {
			return nil, err
		}
		if s == nil {
			continue
		}
		if prev := m.Sections[s.Phase]; prev != nil {
			return nil, fail(s.Line, "phase %s given twice (first at line %d)", s.Phase, prev.Line)
		}
		m.Sections[s.Phase] = s
	}
	if len(m.Sections) == 0 {
		return nil, fail(0, "no SQL statement and no backfill command")
	}
	return m, nil
}

// chunk is the text between two markers.
type chunk struct {
	phase   Phase
	options string
	line    int // marker line; the body starts on the next one
	body    []string
	marked  bool
}

func sectionChunks(text string, fail func(int, string, ...any) error) ([]*chunk, error) {
	lines := strings.Split(text, "\n")
	cur := &chunk{phase: Expand, line: 1}
	chunks := []*chunk{cur}
	for i, l := range lines {
		sub := marker.FindStringSubmatch(l)
		if sub == nil || sub[1] == "allow" {
			cur.body = append(cur.body, l)
			continue
		}
		p := Phase(sub[1])
		switch p {
		case Expand, Backfill, Contract, Rollback:
		default:
			return nil, fail(i+1, "unknown phase %q (want expand, backfill, contract or rollback)", sub[1])
		}
		if p != Backfill && strings.TrimSpace(sub[2]) != "" {
			return nil, fail(i+1, "phase %s takes no options, got %q", p, strings.TrimSpace(sub[2]))
		}
		cur = &chunk{phase: p, options: sub[2], line: i + 1, marked: true}
		chunks = append(chunks, cur)
	}
	return chunks, nil
}

// section parses a chunk; the text before the first marker of a file that
// has markers yields nil when it holds only comments.
func (c *chunk) section(fail func(int, string, ...any) error) (*Section, error) {
	bodyLine := c.line + 1
	if !c.marked {
		bodyLine = 1
	}
	stmts, u := splitStatements(strings.Join(c.body, "\n"), bodyLine)
	if u != nil {
		return nil, fail(u.line, "unterminated %s", u.what)
	}
	s := &Section{Phase: c.phase, Line: c.line, Statements: stmts, Checksum: checksum(c.options, c.body)}
	if !c.marked && len(stmts) == 0 {
		return nil, nil
	}
	if c.phase == Backfill {
		spec, err := parseBackfill(c.options, stmts, c.line, fail)
		if err != nil {
			return nil, err
		}
		s.Backfill = spec
	}
	for _, st := range stmts {
		if c.phase != Backfill && (st.Uses("lo") || st.Uses("hi")) {
			return nil, fail(st.Line, ":lo and :hi belong in a backfill phase, not %s", c.phase)
		}
	}
	return s, nil
}

func checksum(options string, body []string) string {
	var lines []string
	for _, l := range body {
		lines = append(lines, strings.TrimRight(l, " \t\r"))
	}
	text := strings.Trim(strings.Join(lines, "\n"), "\n")
	sum := sha256.Sum256([]byte(strings.TrimSpace(options) + "\n" + text))
	return hex.EncodeToString(sum[:])
}
