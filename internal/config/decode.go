package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Error is one problem in a config file, at a key and line.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", loc, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Msg)
}

// scalar is implemented by types that parse themselves from one YAML scalar.
type scalar interface {
	parse(s string) error
}

// decoder walks a YAML tree into a Config, recording each key's line so that
// validation, which runs later, can still point at the line.
type decoder struct {
	file  string
	lines map[string]int
	errs  []error
}

func (d *decoder) fail(n *yaml.Node, key, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// Parse reads config text; file names it in errors. Relative paths are kept
// as written (Load resolves them against the file's directory).
func Parse(file string, data []byte) (*Config, error) {
	// The YAML library would read UTF-16 by its byte order mark, and then
	// name lines the file's bytes do not have; a config is UTF-8.
	if bytes.HasPrefix(data, []byte{0xff, 0xfe}) || bytes.HasPrefix(data, []byte{0xfe, 0xff}) {
		return nil, &Error{File: file, Line: 1, Msg: "the file is UTF-16 (it starts with a UTF-16 byte order mark): save it as UTF-8"}
	}
	cfg := Default()
	cfg.Path = file
	d := &decoder{file: file, lines: map[string]int{}}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, syntaxError(file, data, err)
	}
	// A second document ("---", two files joined) would be dropped whole,
	// its keys and errors with it.
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, syntaxError(file, data, err)
		}
		if len(next.Content) == 0 {
			continue
		}
		if c := next.Content[0]; c.Kind != yaml.ScalarNode || c.Value != "" {
			return nil, &Error{File: file, Line: max(c.Line, 1), Msg: "a second YAML document (after '---'): a config is one document"}
		}
	}
	if len(root.Content) > 0 {
		d.value(root.Content[0], reflect.ValueOf(cfg).Elem(), "")
	}
	if len(d.errs) == 0 {
		cfg.validate(d)
	}
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	return cfg, nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if _, ok := d.lines[path]; !ok {
		d.lines[path] = n.Line
	}
	if s, ok := v.Addr().Interface().(scalar); ok {
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "want a single value")
			return
		}
		if err := s.parse(n.Value); err != nil {
			d.fail(n, path, "%v", err)
		}
		return
	}
	if apps, ok := v.Addr().Interface().(*Apps); ok {
		d.apps(n, apps, path)
		return
	}
	if dbs, ok := v.Addr().Interface().(*Databases); ok {
		d.databases(n, dbs, path)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Slice:
		d.list(n, v, path)
	case reflect.Map:
		d.dict(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "want a string")
			return
		}
		if n.Tag == "!!null" {
			// Not the text "~" or "null" (a banner showing "~", a state
			// file named null): leave the key out for its default.
			null := "YAML's null"
			if n.Value != "" {
				null += ", " + n.Value
			}
			d.fail(n, path, "has no value (%s): give a string, or leave the key out for its default", null)
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil {
			d.fail(n, path, "want true or false, got %q", n.Value)
			return
		}
		v.SetBool(b)
	case reflect.Int:
		i, err := strconv.Atoi(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil {
			d.fail(n, path, "want a whole number, got %q", n.Value)
			return
		}
		v.SetInt(int64(i))
	default:
		panic("config: no decoder for " + v.Type().String())
	}
}

// pairs yields a mapping's keys and values, reporting duplicates.
func (d *decoder) pairs(n *yaml.Node, path string, each func(key *yaml.Node, val *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return
		}
		d.fail(n, path, "want a mapping of keys to values")
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			d.fail(k, join(path, k.Value), "key given twice")
			continue
		}
		seen[k.Value] = true
		each(k, val)
	}
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	fields := map[string]int{}
	var names []string
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("yaml")
		if tag != "" && tag != "-" {
			fields[tag] = i
			names = append(names, tag)
		}
	}
	d.pairs(n, path, func(k, val *yaml.Node) {
		i, ok := fields[k.Value]
		if !ok {
			msg := "unknown key"
			if near := nearest(k.Value, names); near != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", near)
			}
			d.fail(k, join(path, k.Value), "%s", msg)
			return
		}
		d.lines[join(path, k.Value)] = k.Line
		d.value(val, v.Field(i), join(path, k.Value))
	})
}

func (d *decoder) list(n *yaml.Node, v reflect.Value, path string) {
	items := n.Content
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		items = nil
	case n.Kind == yaml.ScalarNode:
		items = []*yaml.Node{n} // a single value stands for a list of one
	case n.Kind != yaml.SequenceNode:
		d.fail(n, path, "want a list")
		return
	}
	s := reflect.MakeSlice(v.Type(), len(items), len(items))
	for i, item := range items {
		d.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

func (d *decoder) dict(n *yaml.Node, v reflect.Value, path string) {
	m := reflect.MakeMap(v.Type())
	d.pairs(n, path, func(k, val *yaml.Node) {
		e := reflect.New(v.Type().Elem()).Elem()
		d.value(val, e, join(path, k.Value))
		m.SetMapIndex(reflect.ValueOf(k.Value), e)
	})
	v.Set(m)
}

func (d *decoder) apps(n *yaml.Node, apps *Apps, path string) {
	d.pairs(n, path, func(k, val *yaml.Node) {
		app := defaultApp(k.Value)
		d.lines[join(path, k.Value)] = k.Line
		d.value(val, reflect.ValueOf(app).Elem(), join(path, k.Value))
		*apps = append(*apps, app)
	})
}

// nearest suggests the known key closest to a misspelt one.
func nearest(key string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if dist := editDistance(key, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// syntaxError is YAML's own complaint, with a line: yaml.v3 says "line N"
// in most messages, but not for an error on the first line, nor for a byte
// YAML refuses (a control character, invalid UTF-8) — then the line is
// found here: the offending byte's, else the first.
func syntaxError(file string, data []byte, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if strings.Contains(msg, "line ") {
		return &Error{File: file, Msg: msg}
	}
	line := 1
	if i := badByte(data); i >= 0 {
		line += bytes.Count(data[:i], []byte("\n"))
	}
	return &Error{File: file, Line: line, Msg: msg}
}

// badByte returns the offset of the first control character YAML does not
// allow (or of invalid UTF-8), or -1.
func badByte(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 || r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f {
			return i
		}
		i += size
	}
	return -1
}
