package migrate

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Finding is a statement that would take a blocking lock on a table for
// long, with the safe way to write it.
type Finding struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Rule    string `json:"rule"`
	Message string `json:"message"`
	Safe    string `json:"safe"`
}

func (f *Finding) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s\n  safe form:\n    %s\n  (if you have judged it safe: put '-- handoff:allow %s' above it, or pass --allow %s:%d)",
		f.File, f.Line, f.Rule, f.Message, strings.ReplaceAll(f.Safe, "\n", "\n    "), f.Rule, filepath.Base(f.File), f.Line)
}

// rule is one lint check. match returns a message and the safe form, or
// "" when the statement is fine.
type rule struct {
	name     string
	postgres bool // only Postgres has the safe form (CONCURRENTLY, NOT VALID)
	match    func(stmt string, ctx *lintContext) (msg, safe string)
}

// lintContext is what the rules know about the migration so far.
type lintContext struct {
	phase     Phase
	created   map[string]bool // tables created earlier in this migration
	validated map[string]bool // tables with a VALIDATE CONSTRAINT earlier in this migration
}

// LintRules names the rules, for --help and the docs.
var LintRules = []string{"create-index", "set-not-null", "column-type", "volatile-default", "add-constraint", "whole-table-update"}

var (
	reCreateTable  = regexp.MustCompile(`(?i)^create\s+(?:unlogged\s+)?table\s+(?:if\s+not\s+exists\s+)?(\S+?)\s*\(`)
	reCreateIndex  = regexp.MustCompile(`(?i)^create\s+(?:unique\s+)?index\s+(concurrently\s+)?(?:if\s+not\s+exists\s+)?(?:\S+\s+)?on\s+(?:only\s+)?(\S+?)\s*(?:using\s+\w+\s*)?\(`)
	reAlterTable   = regexp.MustCompile(`(?i)^alter\s+table\s+(?:if\s+exists\s+)?(?:only\s+)?(\S+)\s`)
	reSetNotNull   = regexp.MustCompile(`(?i)\balter\s+(?:column\s+)?(\S+)\s+set\s+not\s+null\b`)
	reTypeChange   = regexp.MustCompile(`(?i)\balter\s+(?:column\s+)?(\S+)\s+(?:set\s+data\s+)?type\s+(\S+)`)
	reAddColumn    = regexp.MustCompile(`(?i)\badd\s+(?:column\s+)?(?:if\s+not\s+exists\s+)?(\S+)\s+(.*)`)
	reVolatile     = regexp.MustCompile(`(?i)\bdefault\b.*\b(random|clock_timestamp|gen_random_uuid|uuid_generate_v[14]|nextval|timeofday|txid_current)\s*\(`)
	reSerial       = regexp.MustCompile(`(?i)^(small|big)?serial\b`)
	reAddCheckFK   = regexp.MustCompile(`(?i)\badd\s+(?:constraint\s+(\S+)\s+)?(check|foreign\s+key)\b`)
	reNotValid     = regexp.MustCompile(`(?i)\bnot\s+valid\b`)
	reValidate     = regexp.MustCompile(`(?i)\bvalidate\s+constraint\b`)
	reWholeUpdate  = regexp.MustCompile(`(?i)^(update|delete\s+from)\s+(?:only\s+)?(\S+)`)
	reWhere        = regexp.MustCompile(`(?i)\bwhere\b`)
	reLineComment  = regexp.MustCompile(`--[^\n]*`)
	reBlockComment = regexp.MustCompile(`(?s)/\*.*?\*/`)
	reSpace        = regexp.MustCompile(`\s+`)
	reIndexWord    = regexp.MustCompile(`(?i)^(create\s+(?:unique\s+)?)index`)
)

var rules = []rule{
	{"create-index", true, func(s string, c *lintContext) (string, string) {
		m := reCreateIndex.FindStringSubmatch(s)
		if m == nil || m[1] != "" || c.created[table(m[2])] {
			return "", ""
		}
		return "CREATE INDEX without CONCURRENTLY blocks every write to " + table(m[2]) + " while the index builds",
			reIndexWord.ReplaceAllString(s, "${1}INDEX CONCURRENTLY") + ";\n-- handoff runs it outside a transaction and drops a failed (INVALID) build before retrying"
	}},
	{"set-not-null", true, func(s string, c *lintContext) (string, string) {
		t, m := alter(s, reSetNotNull)
		if m == nil || c.created[t] || c.validated[t] {
			return "", ""
		}
		col, name := unquote(m[1]), t+"_"+unquote(m[1])+"_not_null"
		return "SET NOT NULL scans all of " + t + " under an ACCESS EXCLUSIVE lock",
			fmt.Sprintf("ALTER TABLE %[1]s ADD CONSTRAINT %[3]s CHECK (%[2]s IS NOT NULL) NOT VALID;\nALTER TABLE %[1]s VALIDATE CONSTRAINT %[3]s;\nALTER TABLE %[1]s ALTER COLUMN %[2]s SET NOT NULL;  -- uses the validated CHECK, no scan\nALTER TABLE %[1]s DROP CONSTRAINT %[3]s;", t, col, name)
	}},
	{"column-type", true, func(s string, c *lintContext) (string, string) {
		t, m := alter(s, reTypeChange)
		if m == nil || c.created[t] {
			return "", ""
		}
		col := unquote(m[1])
		return "changing the type of " + t + "." + col + " rewrites the table under an ACCESS EXCLUSIVE lock (except a few binary-compatible changes such as varchar(n) to text)",
			fmt.Sprintf("-- handoff:expand\nALTER TABLE %[1]s ADD COLUMN %[2]s_new %[3]s;\n-- handoff:backfill table=%[1]s key=id\nUPDATE %[1]s SET %[2]s_new = %[2]s::%[3]s WHERE id >= :lo AND id < :hi;\n-- handoff:contract\nALTER TABLE %[1]s DROP COLUMN %[2]s;  -- once the new release reads %[2]s_new", t, col, strings.TrimSuffix(m[2], ";"))
	}},
	{"volatile-default", false, func(s string, c *lintContext) (string, string) {
		t, m := alter(s, reAddColumn)
		if m == nil || c.created[t] || !(reVolatile.MatchString(m[2]) || reSerial.MatchString(m[2])) {
			return "", ""
		}
		col := unquote(m[1])
		return "ADD COLUMN with a volatile default (or a serial) rewrites all of " + t + " under an ACCESS EXCLUSIVE lock",
			fmt.Sprintf("ALTER TABLE %[1]s ADD COLUMN %[2]s <type>;             -- no default: instant\nALTER TABLE %[1]s ALTER COLUMN %[2]s SET DEFAULT <expr>;  -- for new rows\n-- then fill old rows in a backfill phase with :lo/:hi", t, col)
	}},
	{"add-constraint", true, func(s string, c *lintContext) (string, string) {
		t, m := alter(s, reAddCheckFK)
		if m == nil || c.created[t] || reNotValid.MatchString(s) {
			return "", ""
		}
		name := m[1]
		if name == "" {
			name = "<name>"
		}
		return "adding a CHECK or FOREIGN KEY constraint scans " + t + " while holding a lock that blocks writes",
			fmt.Sprintf("%s NOT VALID;\nALTER TABLE %s VALIDATE CONSTRAINT %s;  -- scans without blocking writes", s, t, unquote(name))
	}},
	{"whole-table-update", false, func(s string, c *lintContext) (string, string) {
		m := reWholeUpdate.FindStringSubmatch(s)
		if m == nil || reWhere.MatchString(s) || c.phase == Backfill || c.created[table(m[2])] {
			return "", ""
		}
		t := table(m[2])
		return "one statement over all of " + t + " locks every row it changes until it commits, and live writers wait that long",
			fmt.Sprintf("-- handoff:backfill table=%[1]s key=id\n%[2]s WHERE id >= :lo AND id < :hi;", t, s)
	}},
}

// Lint checks the statements of the given migrations. allow waives
// findings: a rule name (everywhere), FILE:LINE or FILE:LINE:RULE, where
// FILE is the file's path or base name. Statements preceded by
// "-- handoff:allow RULE" are waived too.
func Lint(ms []*Migration, dialectName string, allow []string) []*Finding {
	var out []*Finding
	for _, m := range ms {
		c := &lintContext{created: map[string]bool{}, validated: map[string]bool{}}
		for _, p := range []Phase{Expand, Backfill, Contract} {
			s := m.Sections[p]
			if s == nil {
				continue
			}
			c.phase = p
			for _, st := range s.Statements {
				out = append(out, lintStatement(m, st, c, dialectName, allow)...)
			}
		}
	}
	return out
}

func lintStatement(m *Migration, st Statement, c *lintContext, dialectName string, allow []string) []*Finding {
	s := normalize(st.SQL)
	var out []*Finding
	for _, r := range rules {
		if r.postgres && dialectName != "postgres" {
			continue
		}
		msg, safe := r.match(s, c)
		if msg == "" || allowed(m.Path, st, r.name, allow) {
			continue
		}
		out = append(out, &Finding{File: m.Path, Line: st.Line, Rule: r.name, Message: msg, Safe: safe})
	}
	if mt := reCreateTable.FindStringSubmatch(s); mt != nil {
		c.created[table(mt[1])] = true
	}
	if t, _ := alter(s, reValidate); t != "" && reValidate.MatchString(s) {
		c.validated[t] = true
	}
	return out
}

// alter matches re inside an ALTER TABLE statement and returns its table.
func alter(s string, re *regexp.Regexp) (string, []string) {
	mt := reAlterTable.FindStringSubmatch(s)
	if mt == nil {
		return "", nil
	}
	return table(mt[1]), re.FindStringSubmatch(s[len(mt[0]):])
}

func allowed(path string, st Statement, rule string, allow []string) bool {
	for _, a := range st.Allow {
		if a == rule || a == "all" {
			return true
		}
	}
	line := strconv.Itoa(st.Line)
	for _, a := range allow {
		parts := strings.Split(a, ":")
		switch {
		case len(parts) == 1 && (a == rule || a == "all"):
			return true
		case len(parts) >= 2 && (parts[0] == path || parts[0] == filepath.Base(path)) && parts[1] == line &&
			(len(parts) == 2 || parts[2] == rule):
			return true
		}
	}
	return false
}

func normalize(sql string) string {
	sql = reBlockComment.ReplaceAllString(sql, " ")
	sql = reLineComment.ReplaceAllString(sql, " ")
	return strings.TrimSpace(reSpace.ReplaceAllString(sql, " "))
}

func table(s string) string { return strings.ToLower(unquote(strings.TrimSuffix(s, ";"))) }

func unquote(s string) string { return strings.ReplaceAll(s, `"`, "") }
