package switchover

import "net/url"

// secretParams are the query parameters of a database URL that carry a
// secret (libpq's password and sslpassword; go-sql-driver's DSN has no
// such parameter, but a mysql:// URL may be written with one).
var secretParams = []string{"password", "sslpassword"}

// RedactURL is raw without its secrets — the password of its user part
// and those given as query parameters — for logs, events and status.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)"
	}
	q := u.Query()
	changed := false
	for _, p := range secretParams {
		if q.Has(p) {
			q.Set(p, "xxxxx")
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// Redacted is the record with its URLs' passwords masked (RedactURL), for
// an answer or a page; the journal keeps the record whole.
func (r Record) Redacted() Record {
	r.From, r.To = RedactURL(r.From), RedactURL(r.To)
	return r
}
