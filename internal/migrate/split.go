package migrate

import (
	"strings"
)

// Statement is one SQL statement of a phase.
type Statement struct {
	// SQL is the statement's text without its terminating semicolon.
	SQL string
	// Line is the 1-based line of the file where the statement starts.
	Line int
	// Allow lists the lint rules that a "-- handoff:allow" comment right
	// above the statement waives.
	Allow []string
	// params are the byte offsets of :lo and :hi outside strings and
	// comments, in order.
	params []param
}

type param struct {
	off  int
	name string // "lo" or "hi"
}

// Uses reports whether the statement binds the named batch bound (lo, hi).
func (s Statement) Uses(name string) bool {
	for _, p := range s.params {
		if p.name == name {
			return true
		}
	}
	return false
}

// Bind returns the statement with :lo and :hi replaced by the dialect's
// first and second bind parameters.
func (s Statement) Bind(render func(n int) string) string {
	var b strings.Builder
	last := 0
	for _, p := range s.params {
		b.WriteString(s.SQL[last:p.off])
		if p.name == "lo" {
			b.WriteString(render(1))
		} else {
			b.WriteString(render(2))
		}
		last = p.off + 1 + len(p.name)
	}
	b.WriteString(s.SQL[last:])
	return b.String()
}

// lexer splits SQL text into statements. It knows enough of the SQL lexical
// grammar (quotes, comments, dollar quoting) to find the semicolons and
// parameters that are really there; the database parses the rest.
type lexer struct {
	src   string
	line  int // line of src[0] in the file
	pos   int
	stmts []Statement
	allow []string
	// cur is the statement being read.
	start, startLine int
	params           []param
	// parens and blocks count the statement's open parentheses and BEGIN
	// … END blocks; a semicolon inside either does not end it.
	parens, blocks int
	// words are the statement's first words, lowercased; word is the last
	// word read and wordEnd where it ends.
	words   []string
	word    string
	wordEnd int
}

// unterminated reports a quote or comment that runs to the end of the text.
type unterminated struct {
	what string
	line int
}

func splitStatements(src string, firstLine int) ([]Statement, *unterminated) {
	lx := &lexer{src: src, line: firstLine, start: -1}
	for lx.pos < len(src) {
		if u := lx.step(); u != nil {
			return nil, u
		}
	}
	lx.finish(len(src))
	return lx.stmts, nil
}

func (lx *lexer) lineAt(off int) int { return lx.line + strings.Count(lx.src[:off], "\n") }

func (lx *lexer) step() *unterminated {
	c := lx.src[lx.pos]
	rest := lx.src[lx.pos:]
	switch {
	case strings.HasPrefix(rest, "--"):
		lx.lineComment()
	case strings.HasPrefix(rest, "/*"):
		return lx.blockComment()
	case c == '\'' || c == '"':
		lx.begin()
		// E'…' takes backslash escapes: an E that is a word of its own
		// right before the quote (not the end of one, as in date'…').
		return lx.quoted(c, c == '\'' && lx.wordEnd == lx.pos && lx.word == "e")
	case c == '$':
		lx.begin()
		if tag, ok := dollarTag(rest); ok {
			return lx.dollar(tag)
		}
		lx.pos++
	case c == ';':
		if lx.parens == 0 && lx.blocks == 0 {
			lx.finish(lx.pos)
		}
		lx.pos++
	case c == '(':
		lx.begin()
		lx.parens++
		lx.pos++
	case c == ')':
		lx.begin()
		lx.parens = max(lx.parens-1, 0)
		lx.pos++
	case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80:
		lx.begin()
		lx.ident()
	case c == ':':
		lx.begin()
		lx.colon()
	case c == ' ' || c == '\t' || c == '\n' || c == '\r':
		lx.pos++
	default:
		lx.begin()
		lx.pos++
	}
	return nil
}

// begin marks the start of a statement at the current position.
func (lx *lexer) begin() {
	if lx.start < 0 {
		lx.start, lx.startLine = lx.pos, lx.lineAt(lx.pos)
	}
}

func (lx *lexer) finish(end int) {
	if lx.start >= 0 {
		text := lx.src[lx.start:end]
		trimmed := strings.TrimRight(text, " \t\r\n")
		ps := make([]param, len(lx.params))
		for i, p := range lx.params {
			ps[i] = param{off: p.off - lx.start, name: p.name}
		}
		lx.stmts = append(lx.stmts, Statement{SQL: trimmed, Line: lx.startLine, Allow: lx.allow, params: ps})
	}
	lx.start, lx.params, lx.allow = -1, nil, nil
	lx.parens, lx.blocks, lx.words = 0, 0, lx.words[:0]
}

// ident reads a word (a keyword or an unquoted identifier: letters,
// digits, _ and $ after its first letter, as PostgreSQL reads them) and
// keeps count of the BEGIN … END blocks of a routine's or a trigger's body.
func (lx *lexer) ident() {
	i := lx.pos + 1
	for i < len(lx.src) && (identByte(lx.src[i]) || lx.src[i] == '$' || lx.src[i] >= 0x80) {
		i++
	}
	w := strings.ToLower(lx.src[lx.pos:i])
	lx.pos, lx.word, lx.wordEnd = i, w, i
	if len(lx.words) < 6 {
		lx.words = append(lx.words, w)
	}
	if lx.parens > 0 || !lx.routine() {
		return
	}
	// psql's rule (psqlscan.l), which SQLite's trigger bodies follow too:
	// BEGIN opens a block, END closes one, and CASE, which END also
	// closes, counts inside a block.
	switch {
	case w == "begin":
		lx.blocks++
	case w == "case" && lx.blocks > 0:
		lx.blocks++
	case w == "end" && lx.blocks > 0:
		lx.blocks--
	}
}

// routine reports whether the statement creates a function, a procedure
// or a trigger: CREATE [OR REPLACE] [TEMP|TEMPORARY] FUNCTION|PROCEDURE|
// TRIGGER. Only their bodies (PostgreSQL's BEGIN ATOMIC, SQLite's
// CREATE TRIGGER … BEGIN … END) hold semicolons outside quotes.
func (lx *lexer) routine() bool {
	if len(lx.words) < 2 || lx.words[0] != "create" {
		return false
	}
	for _, w := range lx.words[1:] {
		switch w {
		case "or", "replace", "temp", "temporary":
		case "function", "procedure", "trigger":
			return true
		default:
			return false
		}
	}
	return false
}

func (lx *lexer) lineComment() {
	end := strings.IndexByte(lx.src[lx.pos:], '\n')
	if end < 0 {
		end = len(lx.src) - lx.pos
	}
	text := lx.src[lx.pos : lx.pos+end]
	if rules, ok := allowComment(text); ok && lx.start < 0 {
		lx.allow = append(lx.allow, rules...)
	}
	lx.pos += end
}

// allowComment parses "-- handoff:allow rule[,rule]".
func allowComment(text string) ([]string, bool) {
	t := strings.TrimSpace(strings.TrimPrefix(text, "--"))
	if !strings.HasPrefix(t, "handoff:allow") {
		return nil, false
	}
	var rules []string
	for _, r := range strings.FieldsFunc(strings.TrimPrefix(t, "handoff:allow"), func(r rune) bool { return r == ',' || r == ' ' }) {
		rules = append(rules, r)
	}
	return rules, true
}

func (lx *lexer) blockComment() *unterminated {
	open, depth := lx.pos, 0
	for lx.pos < len(lx.src) {
		switch {
		case strings.HasPrefix(lx.src[lx.pos:], "/*"):
			depth++
			lx.pos += 2
		case strings.HasPrefix(lx.src[lx.pos:], "*/"):
			depth--
			lx.pos += 2
			if depth == 0 {
				return nil
			}
		default:
			lx.pos++
		}
	}
	return &unterminated{"comment", lx.lineAt(open)}
}

func (lx *lexer) quoted(q byte, backslash bool) *unterminated {
	open := lx.pos
	lx.pos++
	for lx.pos < len(lx.src) {
		c := lx.src[lx.pos]
		switch {
		case backslash && c == '\\':
			lx.pos += 2
			continue
		case c == q && lx.pos+1 < len(lx.src) && lx.src[lx.pos+1] == q:
			lx.pos += 2
			continue
		case c == q:
			lx.pos++
			return nil
		}
		lx.pos++
	}
	what := "string"
	if q == '"' {
		what = "quoted identifier"
	}
	return &unterminated{what, lx.lineAt(open)}
}

// dollarTag recognises $$ and $tag$ openings of dollar-quoted strings.
func dollarTag(s string) (string, bool) {
	for i := 1; i < len(s); i++ {
		c := s[i]
		if c == '$' {
			return s[:i+1], true
		}
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 1 && c >= '0' && c <= '9') {
			return "", false
		}
	}
	return "", false
}

func (lx *lexer) dollar(tag string) *unterminated {
	open := lx.pos
	end := strings.Index(lx.src[lx.pos+len(tag):], tag)
	if end < 0 {
		return &unterminated{"dollar-quoted string " + tag, lx.lineAt(open)}
	}
	lx.pos += len(tag) + end + len(tag)
	return nil
}

// colon records :lo and :hi, and steps over :: casts.
func (lx *lexer) colon() {
	rest := lx.src[lx.pos:]
	if strings.HasPrefix(rest, "::") {
		lx.pos += 2
		return
	}
	for _, name := range []string{"lo", "hi"} {
		if strings.HasPrefix(rest[1:], name) && !identByte(at(rest, 1+len(name))) {
			lx.params = append(lx.params, param{off: lx.pos, name: name})
			lx.pos += 1 + len(name)
			return
		}
	}
	lx.pos++
}

func at(s string, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}

func identByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
