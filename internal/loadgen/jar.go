package loadgen

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// jar is one client's cookies, kept the way a browser keeps them for one
// site: by name, sent back on every request. Domain and path are ignored,
// since a client only ever talks to one origin.
type jar struct {
	cookies map[string]string
	header  string // the Cookie header, rebuilt only when cookies change
}

func newJar() *jar { return &jar{cookies: map[string]string{}} }

// update stores the response's Set-Cookie headers; nil jars ignore them.
func (j *jar) update(resp *http.Response) {
	if j == nil || len(resp.Header["Set-Cookie"]) == 0 {
		return
	}
	now := time.Now()
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 || (!c.Expires.IsZero() && c.Expires.Before(now)) {
			delete(j.cookies, c.Name)
		} else {
			j.cookies[c.Name] = c.Value
		}
	}
	parts := make([]string, 0, len(j.cookies))
	for _, name := range slices.Sorted(maps.Keys(j.cookies)) {
		parts = append(parts, name+"="+j.cookies[name])
	}
	j.header = strings.Join(parts, "; ")
}

// value is the Cookie header to send, "" for none (and for a nil jar).
func (j *jar) value() string {
	if j == nil {
		return ""
	}
	return j.header
}
