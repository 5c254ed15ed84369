package migrate

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Finding is a statement that would take a blocking lock on a table for
// long, or break the release still running, with the safe way to write it.
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

// lintContext is what the rules know about the migration so far.
type lintContext struct {
	dialect string
	phase   Phase
	// text is the statement being checked, for safe forms that rewrite it.
	text string
	// created holds tables created earlier in this phase: new and empty,
	// nothing to lock out. It starts empty in each phase: a table created
	// in expand has live rows by contract.
	created map[string]bool
	// validated holds tables with a VALIDATE CONSTRAINT earlier in this
	// migration, in any phase: the constraint stays.
	validated map[string]bool
}

// LintRules names the rules, for --help and the docs.
var LintRules = ruleIDs()

// Lint checks every phase of the given migrations. allow waives
// findings: a rule name (everywhere), FILE:LINE or FILE:LINE:RULE, where
// FILE is the file's path or base name. Statements preceded by
// "-- handoff:allow RULE" are waived too.
func Lint(ms []*Migration, dialectName string, allow []string) []*Finding {
	return LintPending(ms, dialectName, allow, nil)
}

// LintPending is Lint for the phases that have not run: applied reports
// those that have (nil: none). An applied phase is not flagged again, but
// what it did still counts (a constraint it validated).
func LintPending(ms []*Migration, dialectName string, allow []string, applied func(*Migration, Phase) bool) []*Finding {
	var out []*Finding
	for _, m := range ms {
		c := &lintContext{dialect: dialectName, validated: map[string]bool{}}
		for _, p := range Phases {
			s := m.Sections[p]
			if s == nil {
				continue
			}
			c.phase, c.created = p, map[string]bool{}
			quiet := applied != nil && applied(m, p)
			for _, st := range s.Statements {
				if fs := lintStatement(m, st, c, allow); !quiet {
					out = append(out, fs...)
				}
			}
		}
	}
	return out
}

func lintStatement(m *Migration, st Statement, c *lintContext, allow []string) []*Finding {
	// :lo and :hi become parameters, which the grammar accepts anywhere a
	// value goes.
	sql := st.Bind(func(n int) string { return "$" + strconv.Itoa(n) })
	stmts, err := parseSQL(sql)
	if err != nil {
		// SQLite has syntax of its own that Postgres's grammar rejects;
		// SQLite's parser checks it before expand and contract.
		if c.dialect != "postgres" || allowed(m.Path, st, ruleSyntax, allow) {
			return nil
		}
		return []*Finding{{File: m.Path, Line: st.Line, Rule: ruleSyntax,
			Message: "Postgres's grammar (PostgreSQL 17's parser) rejects this statement: " + err.Error(),
			Safe:    "fix the statement; if it is valid on a newer server, waive it with -- handoff:allow syntax"}}
	}
	var out []*Finding
	c.text = st.SQL
	for _, n := range stmts {
		for _, r := range rules {
			if r.postgres && c.dialect != "postgres" {
				continue
			}
			msg, safe := r.check(n, c)
			if msg == "" || allowed(m.Path, st, r.id, allow) {
				continue
			}
			out = append(out, &Finding{File: m.Path, Line: st.Line, Rule: r.id, Message: msg, Safe: safe})
		}
		c.learn(n)
	}
	return out
}

// learn records what a statement did for the statements after it.
func (c *lintContext) learn(n node) {
	switch n.kind {
	case "CreateStmt":
		c.created[relName(field(n.o, "relation"))] = true
	case "CreateTableAsStmt":
		c.created[relName(field(field(n.o, "into"), "rel"))] = true
	case "AlterTableStmt":
		for _, cmd := range nodes(n.o, "cmds") {
			if str(cmd.o, "subtype") == "AT_ValidateConstraint" {
				c.validated[relName(field(n.o, "relation"))] = true
			}
		}
	}
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
