package gateway

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzNormalizePath checks the path rule: never a panic; a result that
// starts with "/", has no dot segment (raw or encoded) and is stable when
// normalized again; and no refusal of a path free of dots.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/a/../b", "/a/%2e%2e/b", "/a/..%2fb", "/a/..;/b", "/%7e/x", "/.", "/..",
		"/a/./b/", "//a//../b", "/a%2Fb", "/a/%2E", "/a\\..\\b", "/%", "/%zz/..", "/a/.%2e/b", "%%370", "/a%00b", "/../x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out, err := normalizePath(raw)
		if err != nil {
			if !strings.ContainsAny(raw, ".%") {
				t.Fatalf("refused %q, which has no dot and no escape", raw)
			}
			return
		}
		if !strings.HasPrefix(out, "/") {
			t.Fatalf("normalizePath(%q) = %q: not absolute", raw, out)
		}
		for _, seg := range strings.Split(out[1:], "/") {
			if seg == "." || seg == ".." || strings.EqualFold(seg, "%2e") || strings.EqualFold(seg, "%2e%2e") {
				t.Fatalf("normalizePath(%q) = %q keeps a dot segment", raw, out)
			}
		}
		again, err := normalizePath(out)
		if err != nil || again != out {
			t.Fatalf("not stable: %q → %q → %q, %v", raw, out, again, err)
		}
	})
}

// FuzzInjector checks the banner injector: never a panic, and the output
// is the input with the banner inserted once at most, whatever the page
// and however it is split into writes.
func FuzzInjector(f *testing.F) {
	f.Add([]byte(`<html><body class="a">x</body></html>`), uint8(3))
	f.Add([]byte(`<BODY>`), uint8(1))
	f.Add([]byte(`<bodyx><body >`), uint8(2))
	f.Add([]byte(`<body`), uint8(0))
	f.Fuzz(func(t *testing.T, page []byte, split uint8) {
		banner := []byte("<!--banner-->")
		var out bytes.Buffer
		in := &injector{dst: &out, banner: banner}
		step := int(split)%16 + 1
		for i := 0; i < len(page); i += step {
			if _, err := in.Write(page[i:min(i+step, len(page))]); err != nil {
				t.Fatal(err)
			}
		}
		if err := in.flush(); err != nil {
			t.Fatal(err)
		}
		got := out.Bytes()
		if n := bytes.Count(got, banner) - bytes.Count(page, banner); n != 0 && n != 1 {
			t.Fatalf("banner inserted %d times", n)
		}
		if !bytes.Equal(bytes.Replace(got, banner, nil, 1), page) && bytes.Count(page, banner) == 0 {
			t.Fatalf("page changed beyond the banner: %q → %q", page, got)
		}
	})
}

// FuzzAllowStyleHash checks the CSP rewrite: never a panic, the hash is
// added at most once per policy, and nothing but the hash (and a 'none'
// it replaces, or a style-src copied from default-src) changes.
func FuzzAllowStyleHash(f *testing.F) {
	for _, s := range []string{"default-src 'self'", "style-src 'none'", "style-src 'unsafe-inline'", "a;b;;c", ",,",
		"style-src-elem 'nonce-x'; style-src 'self'", "DEFAULT-SRC x, style-src y"} {
		f.Add(s)
	}
	const hash = "'sha256-H'"
	f.Fuzz(func(t *testing.T, policy string) {
		if strings.Contains(policy, hash) {
			return
		}
		got := allowStyleHash(policy, hash)
		for _, p := range strings.Split(got, ",") {
			if strings.Count(p, hash) > 1 {
				t.Fatalf("%q → %q: hash added twice", policy, got)
			}
		}
		if strings.Count(got, ",") != strings.Count(policy, ",") {
			t.Fatalf("%q → %q: policies added or lost", policy, got)
		}
	})
}
