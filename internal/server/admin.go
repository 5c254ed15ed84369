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
	"sync/atomic"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/dashboard"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The admin listener's limits (docs/config.md, "The admin listener"). Its
// answers are small, but some go on for long: the dashboard's event stream,
// a deploy's progress, followed logs, and a deploy answered whole when it
// is done. So the write timeout bounds each write, not the answer: a
// client that stops reading is dropped, a long answer is not.
const (
	// adminReadHeaderTimeout bounds a request's head.
	adminReadHeaderTimeout = 10 * time.Second
	// adminReadTimeout bounds a request's head and body together: a login
	// form or an API body trickled in is dropped.
	adminReadTimeout = 30 * time.Second
	// adminWriteTimeout bounds each write of an answer.
	adminWriteTimeout = 30 * time.Second
	// adminIdleTimeout closes a keep-alive connection idle this long.
	adminIdleTimeout = 60 * time.Second
	// minTokenLen is the shortest admin token accepted: 32 characters
	// (128 bits of hex); the generated ones have 48.
	minTokenLen = 32
)

// adminTimeouts are the admin listener's timeouts; tests shorten them.
type adminTimeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

var defaultAdminTimeouts = adminTimeouts{
	ReadHeader: adminReadHeaderTimeout, Read: adminReadTimeout, Write: adminWriteTimeout, Idle: adminIdleTimeout,
}

// adminServer is the admin listener's server, with the token from
// admin.token_file.
func (s *Server) adminServer() *http.Server {
	return newAdminServer(s, s.token, s.registry, s.log, defaultAdminTimeouts, dashboard.Options{Logger: s.log})
}

// newAdminServer serves the control API under /api/ and /metrics, each
// guarded by the token or a dashboard session, and the dashboard on every
// other path. Without a credential, /api/ and /metrics answer 401 (JSON)
// and the dashboard shows its login page.
func newAdminServer(api control.API, token string, metrics prometheus.Gatherer, log *slog.Logger, t adminTimeouts, dopts dashboard.Options) *http.Server {
	auth := dashboard.NewAuth(token, 0)
	dash := dashboard.New(api, auth, dopts)
	mux := http.NewServeMux()
	mux.Handle("/api/", auth.Require(control.Handler(api, log)))
	mux.Handle("/metrics", auth.Require(promhttp.HandlerFor(metrics, promhttp.HandlerOpts{})))
	mux.Handle("/", dash)
	srv := &http.Server{
		Handler:           writeDeadlines(mux, t.Write),
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write, // what the server writes itself; writeDeadlines moves it with each write
		IdleTimeout:       t.Idle,
	}
	// The dashboard's event streams never go idle: Shutdown would wait
	// for them until its deadline if they were not ended first.
	srv.RegisterOnShutdown(dash.Close)
	return srv
}

// writeDeadlines gives each write of an answer d to complete: the
// connection's write deadline moves to d from now before each one. A
// handler that sets its own deadline (http.ResponseController's
// SetWriteDeadline, as the dashboard's event stream does) keeps it.
func writeDeadlines(next http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), d: d}, r)
	})
}

// deadlineWriter is the ResponseWriter of writeDeadlines. It unwraps for
// http.ResponseController.
type deadlineWriter struct {
	http.ResponseWriter
	rc  *http.ResponseController // of the wrapped writer
	d   time.Duration
	own atomic.Bool // the handler set its own deadline
}

func (w *deadlineWriter) extend() {
	if !w.own.Load() {
		w.rc.SetWriteDeadline(time.Now().Add(w.d))
	}
}

func (w *deadlineWriter) WriteHeader(code int) {
	w.extend()
	w.ResponseWriter.WriteHeader(code)
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.extend()
	return w.ResponseWriter.Write(p)
}

// Flush is for handlers that flush through http.Flusher.
func (w *deadlineWriter) Flush() { w.FlushError() }

// FlushError is what http.ResponseController's Flush calls.
func (w *deadlineWriter) FlushError() error {
	w.extend()
	return w.rc.Flush()
}

// SetWriteDeadline is what http.ResponseController's SetWriteDeadline
// calls: the handler's deadline from then on.
func (w *deadlineWriter) SetWriteDeadline(t time.Time) error {
	w.own.Store(true)
	return w.rc.SetWriteDeadline(t)
}

func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// loadToken reads the admin token, creating the file with a random token
// (mode 0600) the first time. An existing file must be readable by its
// owner only and hold at least minTokenLen characters: the token opens
// every control of every app.
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
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("read admin token (admin.token_file): %w", err)
	}
	if mode := fi.Mode().Perm(); mode&0o077 != 0 {
		return "", fmt.Errorf("admin token file %s (admin.token_file) is open to others than its owner (mode %04o): chmod 600 %s", path, mode, path)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("admin token file %s (admin.token_file) is empty", path)
	}
	if len(token) < minTokenLen {
		return "", fmt.Errorf("admin token in %s (admin.token_file) has %d characters, fewer than %d: write a longer one (e.g. openssl rand -hex 24), or remove the file and handoff makes one", path, len(token), minTokenLen)
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
