package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/supervisor"
)

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSecretsStayInTheStore: an app's env values — a password, a database
// URL — reach the instance and the store (a restarted handoff restarts the
// instance from it), and no answer of the API: not status, releases or the
// event log, nor the server's log. The names are shown. Nor does the
// password of database.url, which status fails to reach here.
func TestSecretsStayInTheStore(t *testing.T) {
	const secret = "s3cr3t-hunter2-value"
	dir := t.TempDir()
	rel := filepath.Join(dir, "releases", "v1")
	if err := os.MkdirAll(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`socket: %[1]s/handoff.sock
state: %[1]s/handoff.db
logs: %[1]s/logs
database: { url: "postgres://app:%[2]s@127.0.0.1:1/app" }
apps:
  jobs:
    kind: worker
    command: [/bin/sh, -c, "exec sleep 60"]
    env: { DATABASE_URL: "postgres://app:%[2]s@db.internal/app", API_KEY: %[2]s }
    stop: { timeout: 1s }
    uses_database: false
`, dir, secret)
	cfg, err := config.Parse(filepath.Join(dir, "handoff.yaml"), []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	ctx := context.Background()
	s, err := New(ctx, cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.cancel()
		s.stopInstances()
		s.gw.Close()
		s.store.Close()
	})
	if _, err := s.Deploy(ctx, control.DeployRequest{App: "jobs", Release: rel}, nil); err != nil {
		t.Fatalf("deploy: %v", err)
	}

	api := httptest.NewServer(control.Handler(s, s.log))
	defer api.Close()
	for _, path := range []string{"/api/status", "/api/status?app=jobs", "/api/releases", "/api/events"} {
		resp, err := http.Get(api.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s %s", path, resp.Status, body)
		}
		if strings.Contains(string(body), secret) {
			t.Errorf("%s shows the secret:\n%s", path, body)
		}
		if path != "/api/events" && !strings.Contains(string(body), `"DATABASE_URL": "`+supervisor.RedactedValue+`"`) {
			t.Errorf("%s does not show the environment's names, each %s:\n%s", path, supervisor.RedactedValue, body)
		}
	}
	if !strings.Contains(logs.String(), "read migrations for status") {
		t.Errorf("status did not try the database:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the server's log shows the secret:\n%s", logs.String())
	}

	// What the supervisor needs to restart the instance is still stored.
	docs, err := s.store.List(ctx, supervisor.KindInstance)
	if err != nil || len(docs) != 1 {
		t.Fatalf("stored instances: %d, %v", len(docs), err)
	}
	var inst supervisor.Instance
	if err := docs[0].Decode(&inst); err != nil {
		t.Fatal(err)
	}
	if inst.Env["API_KEY"] != secret {
		t.Errorf("the stored instance lost its environment: %v", inst.Env)
	}
}

// TestStateURLPasswordNotInError: a state store that cannot be reached is
// an error that names it without its password.
func TestStateURLPasswordNotInError(t *testing.T) {
	const secret = "st4te-hunter2"
	dir := t.TempDir()
	cfg, err := config.Parse(filepath.Join(dir, "handoff.yaml"), []byte(fmt.Sprintf("state: postgres://handoff:%s@127.0.0.1:1/state\nlogs: %s/logs\n", secret, dir)))
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	_, err = New(context.Background(), cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err == nil {
		t.Fatal("a server on an unreachable state store started")
	}
	if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) {
		t.Errorf("the password of state: shows: %v\n%s", err, logs.String())
	}
}
