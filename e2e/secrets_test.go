package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecretsNeverLeave: an app's env: values (a password in a database
// URL, an API key) and the password of database.url reach the instance
// and appear nowhere handoff shows them: not in `status` or `status
// --json`, `releases --json`, the admin API's /api/status, the dashboard's
// page or its event stream, nor handoff's own log. The env's names do.
func TestSecretsNeverLeave(t *testing.T) {
	const appSecret, dbSecret = "app-s3cret-7f1c9e", "db-s3cret-0a4b2d"
	dir := t.TempDir()
	web := filepath.Join(dir, "web")
	makeRelease(t, web, "v1", "")
	n := newNode(t, fmt.Sprintf(`  web:
    command: [bin/app]
    releases: %s
    env: { DATABASE_URL: "postgres://app:%s@127.0.0.1:1/app", API_KEY: %q }
    uses_database: false
    health: { path: /healthz, interval: 200ms }
database: { url: "postgres://handoff:%s@127.0.0.1:1/app" }
`, web, appSecret, appSecret, dbSecret))
	n.must("deploy", "web", "--release", filepath.Join(web, "v1"))

	insts := n.instances("web")
	if len(insts) != 1 || insts[0].PID == 0 {
		t.Fatalf("instances: %+v", insts)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", insts[0].PID))
	if err != nil || !strings.Contains(string(environ), "API_KEY="+appSecret) {
		t.Fatalf("the instance's environment lacks API_KEY (%v)", err)
	}

	token := strings.TrimSpace(readFile(filepath.Join(n.dir, "admin.token")))
	admin := func(path string, read func(io.Reader) string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+n.admin+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		return read(resp.Body)
	}
	readAll := func(r io.Reader) string { b, _ := io.ReadAll(r); return string(b) }
	// The stream's first status message carries the whole page's parts.
	firstStatus := func(r io.Reader) string {
		var b strings.Builder
		br := bufio.NewReader(r)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			line, err := br.ReadString('\n')
			b.WriteString(line)
			if err != nil || (strings.Contains(b.String(), "event: status") && line == "\n") {
				break
			}
		}
		return b.String()
	}

	outputs := map[string]string{
		"status":                 n.must("status"),
		"status --json":          n.must("status", "--json"),
		"releases --json":        n.must("releases", "--json"),
		"/api/status":            admin("/api/status", readAll),
		"/api/releases":          admin("/api/releases", readAll),
		"/api/events":            admin("/api/events", readAll),
		"the dashboard":          admin("/", readAll),
		"the dashboard's stream": admin("/events", firstStatus),
	}
	if !strings.Contains(outputs["the dashboard's stream"], "event: status") {
		t.Errorf("the dashboard's stream sent no status:\n%s", outputs["the dashboard's stream"])
	}
	for _, what := range []string{"status --json", "/api/status", "releases --json"} {
		if !strings.Contains(outputs[what], `"API_KEY": "[redacted]"`) {
			t.Errorf("%s does not name the env, its values redacted:\n%s", what, outputs[what])
		}
	}
	outputs["serve.log"] = n.output()
	if !strings.Contains(outputs["serve.log"], "read migrations for status") {
		t.Errorf("status did not try database.url; serve.log:\n%s", outputs["serve.log"])
	}
	for what, out := range outputs {
		for _, secret := range []string{appSecret, dbSecret} {
			if strings.Contains(out, secret) {
				t.Errorf("%s shows a secret (%s):\n%s", what, secret, out)
			}
		}
	}
}
