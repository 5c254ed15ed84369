package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/dashboard"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminServer is the admin listener's server, with the token from
// admin.token_file.
func (s *Server) adminServer() (*http.Server, error) {
	token, err := loadToken(s.cfg.Admin.TokenFile)
	if err != nil {
		return nil, err
	}
	return newAdminServer(s, token, s.registry, s.log), nil
}

// newAdminServer serves the control API under /api/ and /metrics, each
// guarded by the token or a dashboard session, and the dashboard on every
// other path. Without a credential, /api/ and /metrics answer 401 (JSON)
// and the dashboard shows its login page.
func newAdminServer(api control.API, token string, metrics prometheus.Gatherer, log *slog.Logger) *http.Server {
	auth := dashboard.NewAuth(token, 0)
	dash := dashboard.New(api, auth, dashboard.Options{Logger: log})
	mux := http.NewServeMux()
	mux.Handle("/api/", auth.Require(control.Handler(api, log)))
	mux.Handle("/metrics", auth.Require(promhttp.HandlerFor(metrics, promhttp.HandlerOpts{})))
	mux.Handle("/", dash)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	// The dashboard's event streams never go idle: Shutdown would wait
	// for them until its deadline if they were not ended first.
	srv.RegisterOnShutdown(dash.Close)
	return srv
}

// loadToken reads the admin token, creating the file with a random token
// (mode 0600) the first time.
func loadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		raw := make([]byte, 24)
		if _, err := rand.Read(raw); err != nil {
			return "", fmt.Errorf("make admin token: %w", err)
		}
		token := hex.EncodeToString(raw)
		if err := writeFileAtomic(path, []byte(token+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("write admin token: %w", err)
		}
		return token, nil
	}
	if err != nil {
		return "", fmt.Errorf("read admin token (admin.token_file): %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("admin token file %s is empty", path)
	}
	return token, nil
}

// writeFileAtomic writes a file whole or not at all: temp file, fsync, rename.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
