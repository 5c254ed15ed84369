package dashboard

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// The login limiter's settings (see docs/dashboard.md): a client may get
// the admin token wrong freeFailures times; from then on it waits
// firstWait before its next try, twice as long after each further wrong
// token, at most maxWait. Its failures are forgotten forgetAfter its last.
const (
	freeFailures = 5
	firstWait    = time.Second
	maxWait      = 5 * time.Minute
	forgetAfter  = 15 * time.Minute
	// maxClients bounds the clients remembered; past it the one whose
	// last failure is oldest is forgotten first.
	maxClients = 10000
)

// rateLimitedError refuses a token from a client that must wait: it got
// the token wrong too often. The answer is 429 with Retry-After.
type rateLimitedError struct {
	Wait time.Duration
}

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("too many wrong admin tokens from this address; try again in %s", retryAfter(e.Wait).String())
}

// retryAfter rounds a wait up to whole seconds, as Retry-After counts them.
func retryAfter(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

// setRetryAfter sets the Retry-After header of a 429.
func setRetryAfter(w http.ResponseWriter, e *rateLimitedError) {
	w.Header().Set("Retry-After", fmt.Sprint(int64(retryAfter(e.Wait)/time.Second)))
}

// loginLimiter counts each client's wrong tokens — at the login form and
// in Authorization headers alike — and makes it wait, exponentially
// longer, once it has had freeFailures. A client that must wait gets no
// answer about its token at all, right or wrong: the wait is what slows a
// guess. A right token does not reset the count, so that a client sharing
// an address with a script that logs in does not win back its tries.
// Sessions (the cookie) are not checked against it: a logged-in browser
// behind the same address keeps working. It is safe for concurrent use.
type loginLimiter struct {
	mu      sync.Mutex
	clients map[netip.Prefix]*failures
}

type failures struct {
	n     int       // wrong tokens since the client was last forgotten
	last  time.Time // the last one
	until time.Time // no token is checked before then
}

func newLoginLimiter() *loginLimiter {
	return &loginLimiter{clients: map[netip.Prefix]*failures{}}
}

// wait is how long client must wait before a token of its is checked.
func (l *loginLimiter) wait(client netip.Prefix, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.clients[client]
	if f == nil || !now.Before(f.until) {
		return 0
	}
	return f.until.Sub(now)
}

// failed counts a wrong token of client's.
func (l *loginLimiter) failed(client netip.Prefix, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.clients[client]
	if f != nil && now.Sub(f.last) >= forgetAfter {
		f = nil
	}
	if f == nil {
		l.makeRoom(now)
		f = &failures{}
		l.clients[client] = f
	}
	f.n++
	f.last = now
	if f.n >= freeFailures {
		f.until = now.Add(backoff(f.n))
	}
}

// backoff is the wait after the n-th wrong token, n >= freeFailures.
func backoff(n int) time.Duration {
	shift := min(n-freeFailures, 30)
	return min(firstWait<<shift, maxWait)
}

// makeRoom forgets clients whose failures are old, and, with maxClients
// still remembered, the one whose last failure is oldest.
func (l *loginLimiter) makeRoom(now time.Time) {
	if len(l.clients) < maxClients {
		return
	}
	var oldest netip.Prefix
	var oldestAt time.Time
	for c, f := range l.clients {
		if now.Sub(f.last) >= forgetAfter && !now.Before(f.until) {
			delete(l.clients, c)
			continue
		}
		if oldestAt.IsZero() || f.last.Before(oldestAt) {
			oldest, oldestAt = c, f.last
		}
	}
	if len(l.clients) >= maxClients {
		delete(l.clients, oldest)
	}
}

// clientOf is who a request comes from, for the limiter: its peer's IP
// address, an IPv6 one by its /64 (what one host is usually given).
// X-Forwarded-For is not believed: anyone can send it. Behind a proxy,
// every client is the proxy.
func clientOf(r *http.Request) netip.Prefix {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{} // not an IP (a unix socket): one client
	}
	addr = addr.Unmap().WithZone("")
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}
