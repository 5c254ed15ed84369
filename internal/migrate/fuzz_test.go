package migrate

import (
	"strings"
	"testing"
)

// splitSeeds seed FuzzSplitStatements: statements with every lexical form
// the splitter knows (quotes, E-strings, dollar quotes, nested comments,
// casts, batch parameters, allow comments), and unterminated ones; the
// cases of TestSplitForms (bodies, parentheses) seed it too.
var splitSeeds = []string{
	"CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);",
	"SELECT 'a;b', \"c;d\", E'\\';', $$;$$, $tag$ ; $tag$;",
	"/* a /* nested ; */ comment */ SELECT 1; -- trailing ; comment\nSELECT 2",
	"-- handoff:allow add-column-default\nALTER TABLE t ADD COLUMN c int DEFAULT 0;",
	"UPDATE t SET c = id::text WHERE id >= :lo AND id < :hi;",
	"SELECT ':lo', :lower, :hi;;;",
	"SELECT 1 -- no newline at the end",
	"SELECT 'it''s';\r\nSELECT 2;\r\n",
	"SELECT 'unterminated",
	"SELECT $x$ unterminated",
	"/* unterminated",
	"SELECT \"unterminated",
	"E'\\",
	"$1$ $a1$ x $a1$;",
	"  ;  ; \n\t",
	"",
}

// FuzzSplitStatements splits arbitrary text. It must never panic; on
// success the text must be exactly the statements, in order, with only
// whitespace, semicolons and comments between and around them (so
// re-joining the statements gives back the text's content less those),
// each statement must start on the line it says, bind its :lo and :hi
// where they are, and splitting the statements joined again must give the
// same statements. An unterminated quote or comment names a line of the
// text. Parse must not panic on the same text either.
func FuzzSplitStatements(f *testing.F) {
	for _, s := range splitSeeds {
		f.Add(s, uint8(0))
	}
	for _, c := range splitCases {
		f.Add(c.text, uint8(0))
	}
	f.Add("SELECT 1;\nSELECT 2;", uint8(41))
	f.Fuzz(func(t *testing.T, src string, firstLine uint8) {
		Parse("0001_fuzz.sql", src)
		first := int(firstLine) + 1
		stmts, u := splitStatements(src, first)
		if u != nil {
			if last := first + strings.Count(src, "\n"); u.line < first || u.line > last {
				t.Fatalf("unterminated %s at line %d, outside lines %d..%d of %q", u.what, u.line, first, last, src)
			}
			return
		}
		pos := 0
		for i, st := range stmts {
			// Whitespace is the splitter's (and SQL's): space, tab, CR, LF.
			if st.SQL == "" || strings.Trim(st.SQL, " \t\r\n") != st.SQL {
				t.Fatalf("statement %d %q is empty or has whitespace around it; text %q", i, st.SQL, src)
			}
			pos = skipGap(src, pos)
			if !strings.HasPrefix(src[pos:], st.SQL) {
				t.Fatalf("statement %d %q is not what the text has at byte %d (%q); text %q", i, st.SQL, pos, clipText(src[pos:]), src)
			}
			if want := first + strings.Count(src[:pos], "\n"); st.Line != want {
				t.Fatalf("statement %d %q says line %d, it starts on line %d; text %q", i, st.SQL, st.Line, want, src)
			}
			pos += len(st.SQL)
			end := pos
			for end < len(src) && strings.IndexByte(" \t\r\n", src[end]) >= 0 {
				end++
			}
			if end < len(src) && src[end] != ';' {
				t.Fatalf("statement %d %q ends before %q, not at a semicolon; text %q", i, st.SQL, clipText(src[pos:]), src)
			}
			bound := st.Bind(func(n int) string { return [...]string{1: ":lo", 2: ":hi"}[n] })
			if bound != st.SQL {
				t.Fatalf("statement %d %q binds its parameters in the wrong places: %q; text %q", i, st.SQL, bound, src)
			}
		}
		if rest := skipGap(src, pos); rest != len(src) {
			t.Fatalf("text after the last statement was dropped: %q; text %q", clipText(src[rest:]), src)
		}

		var joined []string
		for _, st := range stmts {
			joined = append(joined, st.SQL)
		}
		again, u := splitStatements(strings.Join(joined, "\n;\n"), 1)
		if u != nil || len(again) != len(stmts) {
			t.Fatalf("the statements joined again split into %d (%v), not %d; text %q", len(again), u, len(stmts), src)
		}
		for i := range again {
			if again[i].SQL != stmts[i].SQL {
				t.Fatalf("statement %d joined again reads %q, not %q; text %q", i, again[i].SQL, stmts[i].SQL, src)
			}
		}
	})
}

// skipGap returns where the next statement may start at or after pos:
// past whitespace, semicolons, -- comments and (nested) /* */ comments, as
// PostgreSQL's lexer reads them between statements.
func skipGap(src string, pos int) int {
	for pos < len(src) {
		rest := src[pos:]
		switch {
		case strings.IndexByte(" \t\r\n;", src[pos]) >= 0:
			pos++
		case strings.HasPrefix(rest, "--"):
			if i := strings.IndexByte(rest, '\n'); i >= 0 {
				pos += i
			} else {
				pos = len(src)
			}
		case strings.HasPrefix(rest, "/*"):
			depth := 0
			for pos < len(src) {
				if strings.HasPrefix(src[pos:], "/*") {
					depth++
					pos += 2
				} else if strings.HasPrefix(src[pos:], "*/") {
					depth--
					pos += 2
					if depth == 0 {
						break
					}
				} else {
					pos++
				}
			}
		default:
			return pos
		}
	}
	return pos
}

func clipText(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
