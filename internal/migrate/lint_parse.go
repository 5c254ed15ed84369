package migrate

// The lint parses statements with Postgres's own grammar: libpg_query (the
// parser of PostgreSQL 17, as pg_query_go and so pgroll use it), compiled to
// WebAssembly and run by wazero, a pure-Go runtime, through
// github.com/wasilibs/go-pgquery. The decision, weighed in
// docs/migrations.md ("Lint" → "The parser"):
//
//   - pg_query_go itself needs cgo: CGO_ENABLED=0 builds (our static
//     binary) could not have it, so the lint would need a build tag and a
//     second, weaker implementation for the release binary.
//   - go-pgquery is the same C code and the same parse tree, builds with
//     CGO_ENABLED=0, and adds 6.6 MB to the static binary (34.5 to 41.1 MB).
//   - Its cost: the first parse in a process compiles the module, about
//     1.5 s on the 2-core development machine (13 s under the race
//     detector), with a transient heap of about 250 MB (30 MB resident
//     after); every statement after that takes tens of microseconds.
//     The lint runs in one-shot commands (migrate lint, expand, contract),
//     so that is paid once per command, and only when there is SQL to lint.
//
// We use its parser package's ParseToJSON, which returns libpg_query's JSON
// parse tree: it does not import pg_query_go's Go types, whose package pulls
// in (and, with cgo on, compiles) libpg_query's C sources.

import (
	"encoding/json"
	"strings"
	"sync"

	pgparser "github.com/wasilibs/go-pgquery/parser"
)

// obj is one node of libpg_query's JSON parse tree.
type obj = map[string]any

// parseMu serializes parses: go-pgquery compiles a new WebAssembly runtime
// for every parse that finds its pool empty, so concurrent callers would
// each pay the compilation.
var parseMu sync.Mutex

// parseSQL returns the statements of sql as (kind, node) pairs, e.g.
// ("AlterTableStmt", {...}).
func parseSQL(sql string) ([]node, error) {
	parseMu.Lock()
	text, err := pgparser.ParseToJSON(sql)
	parseMu.Unlock()
	if err != nil {
		return nil, err
	}
	var tree struct {
		Stmts []struct {
			Stmt obj `json:"stmt"`
		} `json:"stmts"`
	}
	if err := json.Unmarshal([]byte(text), &tree); err != nil {
		return nil, err
	}
	var out []node
	for _, s := range tree.Stmts {
		if n := wrapped(s.Stmt); n.kind != "" {
			out = append(out, n)
		}
	}
	return out, nil
}

// node is a parse tree node with its type name.
type node struct {
	kind string
	o    obj
}

// wrapped unwraps {"Kind": {...}}.
func wrapped(v any) node {
	m, ok := v.(obj)
	if !ok || len(m) != 1 {
		return node{}
	}
	for k, inner := range m {
		if o, ok := inner.(obj); ok && k != "" && k[0] >= 'A' && k[0] <= 'Z' {
			return node{k, o}
		}
	}
	return node{}
}

func field(o obj, name string) obj {
	m, _ := o[name].(obj)
	return m
}

func str(o obj, name string) string {
	s, _ := o[name].(string)
	return s
}

func flag(o obj, name string) bool {
	b, _ := o[name].(bool)
	return b
}

func num(o obj, name string) float64 {
	n, _ := o[name].(float64)
	return n
}

// nodes returns a list field's elements, unwrapped.
func nodes(o obj, name string) []node {
	l, _ := o[name].([]any)
	out := make([]node, 0, len(l))
	for _, v := range l {
		out = append(out, wrapped(v))
	}
	return out
}

// walk calls fn for every wrapped node in v, v included, depth first.
func walk(v any, fn func(node)) {
	switch t := v.(type) {
	case obj:
		if n := wrapped(t); n.kind != "" {
			fn(n)
		}
		for _, c := range t {
			walk(c, fn)
		}
	case []any:
		for _, c := range t {
			walk(c, fn)
		}
	}
}

// relName is a RangeVar's table name as the lint keys it: lower case as
// the parser gives it, schema-qualified unless the schema is public.
func relName(rv obj) string {
	if rv == nil {
		return ""
	}
	name := str(rv, "relname")
	if s := str(rv, "schemaname"); s != "" && s != "public" {
		name = s + "." + name
	}
	return name
}

// names joins a list of String nodes (a qualified name) with dots,
// without pg_catalog.
func names(o obj, name string) string {
	var parts []string
	for _, n := range nodes(o, name) {
		if n.kind == "String" && str(n.o, "sval") != "pg_catalog" {
			parts = append(parts, str(n.o, "sval"))
		}
	}
	return strings.Join(parts, ".")
}

// typeName is a TypeName's base type, e.g. "varchar", "int4", "json".
func typeName(t obj) string {
	n := nodes(t, "names")
	if len(n) == 0 {
		return ""
	}
	return str(n[len(n)-1].o, "sval")
}

// hasOption reports whether a DefElem list has the option turned on (an
// option without a value, or with a true one).
func hasOption(o obj, list, name string) bool {
	for _, n := range nodes(o, list) {
		if n.kind != "DefElem" || str(n.o, "defname") != name {
			continue
		}
		arg := wrapped(n.o["arg"])
		switch arg.kind {
		case "":
			return true
		case "String":
			v := strings.ToLower(str(arg.o, "sval"))
			return v != "false" && v != "off" && v != "0"
		case "Boolean":
			return flag(arg.o, "boolval")
		case "Integer":
			return num(arg.o, "ival") != 0
		}
		return true
	}
	return false
}
