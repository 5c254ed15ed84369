package gateway

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Each release's answers are counted on their own, so that two releases
// side by side can be compared: here v2 sends everyone to a login page.
func TestReleaseStatsSideBySide(t *testing.T) {
	answer := func(status string) func(c net.Conn, r *http.Request, body []byte) {
		return func(c net.Conn, r *http.Request, body []byte) {
			io.WriteString(c, "HTTP/1.1 "+status+"\r\nLocation: /login\r\nContent-Length: 2\r\n\r\nok")
		}
	}
	v1, v2 := newWireBackend(t, answer("200 OK")), newWireBackend(t, answer("302 Found"))
	g, addr := frontDoor(t, v1.addr)
	if _, err := g.SetRoute("web", Route{Pools: []Pool{{Release: "v1", Targets: []string{v1.addr}, Weight: 1}, {Release: "v2", Targets: []string{v2.addr}, Weight: 1}}}); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for range 200 {
		resp, err := c.Get("http://" + addr + "/page")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	byRelease := map[string]ReleaseCounts{}
	for _, rc := range g.ReleaseStats("web") {
		byRelease[rc.Release] = rc
	}
	a, b := byRelease["v1"], byRelease["v2"]
	if a.Requests()+b.Requests() != 200 || a.Requests() < 50 || b.Requests() < 50 {
		t.Fatalf("requests: v1 %d, v2 %d; want 200 shared", a.Requests(), b.Requests())
	}
	if a.Share(2) != 1 || b.Share(3) != 1 {
		t.Errorf("shares: v1 2xx %.2f, v2 3xx %.2f; want 1 and 1", a.Share(2), b.Share(3))
	}
	if q := a.Quantile(0.99); q <= 0 || q > time.Second {
		t.Errorf("v1 p99 %v", q)
	}
	later := a.Minus(a)
	if later.Requests() != 0 {
		t.Errorf("a reading minus itself: %d requests", later.Requests())
	}
	if !strings.Contains(strings.Join([]string{a.Release, b.Release}, ","), "v1,v2") {
		t.Errorf("releases %s, %s", a.Release, b.Release)
	}
}

func TestQuantile(t *testing.T) {
	var s releaseStats
	for i := range 100 {
		s.observe(200, time.Duration(i+1)*time.Millisecond) // 1..100 ms
	}
	c := s.read("v1")
	if q := c.Quantile(0.5); q != 50*time.Millisecond {
		t.Errorf("p50 = %v, want the 50ms bucket", q)
	}
	if q := c.Quantile(0.99); q != 100*time.Millisecond {
		t.Errorf("p99 = %v, want the 100ms bucket", q)
	}
}
