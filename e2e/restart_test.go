package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestRestartKeepsRoutesAndModes: kill -9 of handoff serve loses nothing: a
// restarted server serves the same release, in the same mode.
func TestRestartKeepsRoutesAndModes(t *testing.T) {
	v1, v2 := startBackend(t, "v1"), startBackend(t, "v2")
	n := newNode(t, fmt.Sprintf("  web:\n    targets: [%q]\n    health: { path: /healthz }\n", v1.addr))
	n.must("deploy", "web", "--target", v2.addr, "--label", "v2")
	n.must("readonly", "on", "--banner", "Back to normal soon")
	n.kill9()
	n.start()

	st := n.status()
	a := st.Apps[0]
	if a.Current != "v2" || a.Previous != "initial" || a.Mode != "readonly" || a.Pools[0].Targets[0].Addr != v2.addr {
		t.Fatalf("after kill -9 and restart: %+v", a)
	}
	req, _ := http.NewRequest("GET", "http://"+n.gateway+"/", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("X-Release") != "v2" || !strings.Contains(string(body), "Back to normal soon") {
		t.Fatalf("restarted gateway served %s without the banner?\n%s", resp.Header.Get("X-Release"), body)
	}
	resp, err = http.Post("http://"+n.gateway+"/items", "application/json", strings.NewReader(`{"name":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("a write after restart in read-only mode: %d", resp.StatusCode)
	}
}
