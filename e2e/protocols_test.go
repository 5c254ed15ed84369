package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHTTP2AndMetrics: clients that speak HTTP/2 with prior knowledge (h2c)
// are served, requests are counted in /metrics by app, release and status
// class, and deploys too — /metrics behind the admin token.
func TestHTTP2AndMetrics(t *testing.T) {
	v1, v2 := startBackend(t, "v1"), startBackend(t, "v2")
	n := newNode(t, fmt.Sprintf("  web:\n    targets: [%q]\n    health: { path: /healthz }\n", v1.addr))
	h2 := &http.Client{Transport: &http.Transport{Protocols: new(http.Protocols)}}
	h2.Transport.(*http.Transport).Protocols.SetUnencryptedHTTP2(true)
	for range 10 {
		resp, err := h2.Get("http://" + n.gateway + "/fast")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 || resp.Header.Get("X-Release") != "v1" {
			t.Fatalf("h2c: %s %d %q", resp.Proto, resp.StatusCode, resp.Header.Get("X-Release"))
		}
	}
	resp, err := h2.Post("http://"+n.gateway+"/upload", "application/octet-stream", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "5 ") {
		t.Fatalf("h2c upload: %d %q", resp.StatusCode, body)
	}
	n.must("deploy", "web", "--target", v2.addr, "--label", "v2")

	token, err := os.ReadFile(filepath.Join(n.dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+n.admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`handoff_requests_total{app="web",code="2xx",release="initial"} 11`,
		`handoff_deploys_total{app="web",state="done"} 1`,
		`handoff_request_duration_seconds_count{app="web"}`,
		`handoff_inflight_requests{app="web",release="v2"`,
		`handoff_mode{app="web",mode="normal"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
