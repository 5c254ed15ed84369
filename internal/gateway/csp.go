package gateway

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
)

// bannerStyle is the banner's look, in a <style> element of its own: a
// Content-Security-Policy can allow an element's exact text by its hash,
// where an inline style attribute could only be allowed by
// 'unsafe-inline' (or 'unsafe-hashes'), which would weaken the app's policy.
const bannerStyle = `#handoff-banner{position:sticky;top:0;z-index:2147483647;background:#fff3cd;color:#664d03;` +
	`border-bottom:1px solid #e6c870;padding:.6em 1em;font:15px/1.4 system-ui,sans-serif;text-align:center}`

// bannerStyleHash is the CSP source that allows bannerStyle and nothing else.
var bannerStyleHash = func() string {
	sum := sha256.Sum256([]byte(bannerStyle))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

// allowBanner rewrites the page's Content-Security-Policy headers (enforced
// and report-only) so that they allow the banner's <style> element: its
// hash is added to the directive that governs <style> elements, and
// nothing else changes. A policy that already allows inline styles is left
// as it is. (A policy in a <meta> tag is not rewritten: there the banner
// shows unstyled, as plain text at the top of the page.)
func allowBanner(h http.Header) {
	for _, k := range []string{"Content-Security-Policy", "Content-Security-Policy-Report-Only"} {
		vv := h[k]
		for i, v := range vv {
			vv[i] = allowStyleHash(v, bannerStyleHash)
		}
	}
}

// allowStyleHash adds hash to every policy in a header value (policies are
// separated by commas; a page must satisfy each of them).
func allowStyleHash(header, hash string) string {
	policies := strings.Split(header, ",")
	for i, p := range policies {
		policies[i] = allowStyleHashInPolicy(p, hash)
	}
	return strings.Join(policies, ",")
}

// allowStyleHashInPolicy adds hash to the one directive that governs
// <style> elements in policy: style-src-elem, else style-src, else
// default-src (then as a new style-src with default-src's sources, so that
// nothing else widens).
func allowStyleHashInPolicy(policy, hash string) string {
	dirs := strings.Split(policy, ";")
	find := func(name string) int {
		for i, d := range dirs {
			f := strings.Fields(d)
			if len(f) > 0 && strings.EqualFold(f[0], name) {
				return i
			}
		}
		return -1
	}
	i := find("style-src-elem")
	if i < 0 {
		i = find("style-src")
	}
	if i >= 0 {
		f := strings.Fields(dirs[i])
		if !allowsInline(f[1:]) {
			dirs[i] = " " + strings.Join(append(f[:1:1], withSource(f[1:], hash)...), " ")
		}
		return strings.Join(dirs, ";")
	}
	if i = find("default-src"); i < 0 {
		return policy // nothing restricts styles
	}
	f := strings.Fields(dirs[i])
	if allowsInline(f[1:]) {
		return policy
	}
	dirs = append(dirs, " style-src "+strings.Join(withSource(f[1:], hash), " "))
	return strings.Join(dirs, ";")
}

// allowsInline reports whether a source list allows any inline style:
// 'unsafe-inline' counts only without a nonce or hash beside it (CSP 3).
func allowsInline(sources []string) bool {
	inline := false
	for _, s := range sources {
		s = strings.ToLower(s)
		switch {
		case s == "'unsafe-inline'":
			inline = true
		case strings.HasPrefix(s, "'nonce-"), strings.HasPrefix(s, "'sha"):
			return false
		}
	}
	return inline
}

// withSource returns sources with src added; 'none' goes, since a list
// with 'none' and another source is not a valid list.
func withSource(sources []string, src string) []string {
	out := make([]string, 0, len(sources)+1)
	for _, s := range sources {
		if !strings.EqualFold(s, "'none'") {
			out = append(out, s)
		}
	}
	return append(out, src)
}
