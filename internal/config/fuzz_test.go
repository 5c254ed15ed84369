package config

import (
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// configSeeds seed FuzzParse: a full config, the mistakes
// TestParseErrorsNameKeyAndLine covers, and YAML's own traps (anchors,
// aliases, tags, flow style, documents).
var configSeeds = []string{
	`listen: ["127.0.0.1:8080"]
socket: ./handoff.sock
admin: { listen: 127.0.0.1:9900, token_file: ./admin.token }
state: ./handoff.db
apps:
  web:
    hosts: [example.com]
    command: [bin/server]
    instances: 4
    bricks: 2
    health: { path: /healthz, interval: 1s, timeout: 2s }
    drain_timeout: 30s
  mailin:
    kind: worker
    command: [bin/mailin]
    drain: { signal: SIGTERM, timeout: 2h }
`,
	"apps:\n  web:\n    instnces: 3\n",
	"apps:\n  web:\n    drain_timeout: soon\n",
	"apps:\n  a: {}\n  b: {}\n",
	"listen: [8080]\n",
	"apps:\n  a:\n    instances: 1\n    instances: 2\n",
	"apps: [\n",
	"apps:\n  a: &x {instances: 2}\n  b: *x\n",
	"listen: !!binary aGVsbG8=\n",
	"--- \nlisten: [a]\n---\nlisten: [b]\n",
	"apps:\n  w:\n    kind: worker\n",
	"hold: {max_requests: 0}\n",
	"gateway: {max_header_bytes: 10QB}\n",
	"",
}

// FuzzParse decodes arbitrary config text. It must never panic, and every
// error must be a *Error for the file, naming a line within the text when
// it is about YAML content: a syntax error, or a key whose top-level
// section the text has.
func FuzzParse(f *testing.F) {
	for _, s := range configSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("h.yaml", data)
		if err == nil {
			if cfg == nil {
				t.Fatalf("no config and no error for %q", data)
			}
			return
		}
		lines := yamlLines(string(data))
		top := topLevelKeys(data)
		for _, e := range leafErrors(err) {
			var ce *Error
			if !errors.As(e, &ce) {
				t.Fatalf("error %T %q is no *config.Error; input %q", e, e, data)
			}
			if ce.File != "h.yaml" {
				t.Fatalf("error %q names the file %q; input %q", ce, ce.File, data)
			}
			if ce.Line < 0 || ce.Line > lines {
				t.Fatalf("error %q names line %d of a %d-line text %q", ce, ce.Line, lines, data)
			}
			switch {
			case ce.Key == "":
				// YAML's own complaint: it must say where.
				if ce.Line == 0 && !strings.Contains(ce.Msg, "line ") {
					t.Fatalf("a syntax error names no line: %q; input %q", ce, data)
				}
			case top[section(ce.Key)] && ce.Line == 0:
				t.Fatalf("error %q about a key the text has names no line; input %q", ce, data)
			}
		}
	})
}

// yamlLines counts the lines of text as YAML does: CRLF, CR, LF and the
// Unicode line breaks NEL, LS and PS each end one.
func yamlLines(text string) int {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	n := 1
	for _, r := range text {
		switch r {
		case '\r', '\n', '\u0085', '\u2028', '\u2029':
			n++
		}
	}
	return n
}

// leafErrors flattens errors.Join.
func leafErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leafErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// section is the top-level key a key path starts with: apps for
// apps.web.instances, listen for listen[0].
func section(key string) string {
	if i := strings.IndexAny(key, ".["); i >= 0 {
		return key[:i]
	}
	return key
}

// topLevelKeys are the keys of the document's top-level mapping.
func topLevelKeys(data []byte) map[string]bool {
	keys := map[string]bool{}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return keys
	}
	doc := root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return keys
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		keys[doc.Content[i].Value] = true
	}
	return keys
}
