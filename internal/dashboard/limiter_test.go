package dashboard

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable Auth.now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func withClock(s *testServer) *clock {
	c := &clock{t: time.Now()}
	s.auth.now = c.now
	return c
}

// TestLoginRateLimit: after freeFailures wrong tokens from one address,
// its tokens — even the right one — get 429 with Retry-After, as a JSON
// error from the API and the login page from /login, for a wait that
// doubles with each further wrong token; a session already open goes on
// working; the wait over, the right token logs in.
func TestLoginRateLimit(t *testing.T) {
	s := newTestServer(t, newFakeAPI())
	clk := withClock(s)
	cookie := s.login(t, "alice")
	bearer := func(tok string) (*http.Response, string) {
		return s.do(t, "GET", "/api/status", "", "Authorization: Bearer "+tok)
	}
	loginWith := func(tok string) (*http.Response, string) {
		form := url.Values{"token": {tok}}.Encode()
		return s.do(t, "POST", "/login", form, "Content-Type: application/x-www-form-urlencoded", "Origin: "+s.URL)
	}
	for i := range freeFailures - 1 {
		if resp, _ := bearer("wrong"); resp.StatusCode != 401 {
			t.Fatalf("wrong token %d: %s, want 401", i+1, resp.Status)
		}
	}
	if resp, _ := loginWith("wrong"); resp.StatusCode != 401 { // the last free one, at the form
		t.Fatalf("wrong token %d at /login: %s, want 401", freeFailures, resp.Status)
	}

	resp, body := bearer(testToken)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(body, `"error"`) {
		t.Fatalf("the right token while waiting: %s, Retry-After %q, %s %q; want 429, 1, a JSON error",
			resp.Status, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"), body)
	}
	resp, body = loginWith(testToken)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" || len(resp.Cookies()) != 0 || !strings.Contains(body, "Too many wrong tokens") {
		t.Fatalf("login while waiting: %s, Retry-After %q, %d cookies: %s", resp.Status, resp.Header.Get("Retry-After"), len(resp.Cookies()), body)
	}
	if resp, _ := s.do(t, "GET", "/events", "", "Authorization: Bearer "+testToken); resp.StatusCode != 429 {
		t.Errorf("the event stream with a token while waiting: %s, want 429", resp.Status)
	}
	if resp, _ := s.do(t, "GET", "/api/status", "", cookie); resp.StatusCode != 200 {
		t.Errorf("an open session while its address waits: %s, want 200", resp.Status)
	}

	// Each further wrong token doubles the wait: 2s, 4s, ...
	for i, want := range []string{"2", "4", "8"} {
		clk.add(time.Duration(1<<i) * time.Second)
		if resp, _ := bearer("wrong"); resp.StatusCode != 401 {
			t.Fatalf("a wrong token after the wait: %s, want 401", resp.Status)
		}
		if resp, _ := bearer(testToken); resp.StatusCode != 429 || resp.Header.Get("Retry-After") != want {
			t.Fatalf("after %d wrong tokens: %s, Retry-After %q, want 429, %s", freeFailures+i+1, resp.Status, resp.Header.Get("Retry-After"), want)
		}
	}
	clk.add(8 * time.Second)
	if resp, _ := bearer(testToken); resp.StatusCode != 200 {
		t.Errorf("the right token after the wait: %s", resp.Status)
	}
	s.login(t, "alice")
}

// TestLoginLimiter: the wait grows to maxWait and no further; failures are
// forgotten forgetAfter the last one; clients are told apart by address,
// an IPv6 one by its /64; and no more than maxClients are remembered.
func TestLoginLimiter(t *testing.T) {
	l := newLoginLimiter()
	now := time.Now()
	a := netip.MustParsePrefix("192.0.2.1/32")
	for range freeFailures - 1 {
		l.failed(a, now)
	}
	if w := l.wait(a, now); w != 0 {
		t.Errorf("wait after %d failures: %s", freeFailures-1, w)
	}
	l.failed(a, now)
	if w := l.wait(a, now); w != firstWait {
		t.Errorf("wait after %d failures: %s, want %s", freeFailures, w, firstWait)
	}
	for range 40 {
		l.failed(a, now)
	}
	if w := l.wait(a, now); w != maxWait {
		t.Errorf("wait after many failures: %s, want %s", w, maxWait)
	}
	later := now.Add(maxWait + forgetAfter)
	l.failed(a, later)
	if w := l.wait(a, later); w != 0 {
		t.Errorf("a failure %s after the last counts from zero, yet the wait is %s", forgetAfter, w)
	}

	for _, c := range []struct {
		remote string
		want   string
	}{
		{"192.0.2.7:1234", "192.0.2.7/32"},
		{"[::ffff:192.0.2.7]:1234", "192.0.2.7/32"},
		{"[2001:db8:1:2:3:4:5:6]:1234", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:1234", "fe80::/64"},
	} {
		if got := clientOf(&http.Request{RemoteAddr: c.remote}); got != netip.MustParsePrefix(c.want) {
			t.Errorf("clientOf(%s) = %s, want %s", c.remote, got, c.want)
		}
	}

	l = newLoginLimiter()
	for i := range maxClients + 10 {
		addr := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.failed(netip.PrefixFrom(addr, 32), now.Add(time.Duration(i)))
	}
	if n := len(l.clients); n > maxClients {
		t.Errorf("%d clients remembered, at most %d", n, maxClients)
	}
}
