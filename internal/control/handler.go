package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/gateway"
)

// API is what the control API controls: the server implements it.
type API interface {
	Status(ctx context.Context, app string) (*Status, error)
	Deploy(ctx context.Context, req DeployRequest, progress func(deploy.Progress)) (*deploy.Deploy, error)
	Rollback(ctx context.Context, req RollbackRequest, progress func(deploy.Progress)) (*deploy.Deploy, error)
	SetMode(ctx context.Context, mode string, req ModeRequest) error
	Events(ctx context.Context, after int64, limit int) (*Events, error)
	Releases(ctx context.Context, app string) (*Releases, error)
	// Logs writes the app's instance logs to w: the last lines of each,
	// then, with follow, what they append until ctx ends.
	Logs(ctx context.Context, w io.Writer, app string, lines int, follow bool) error
	// Upgrade hands over to the handoff binary on disk; see server.Upgrade.
	Upgrade(ctx context.Context) (*Upgrade, error)
	// FleetDrain and FleetForget act on the nodes sharing a Postgres state.
	FleetDrain(ctx context.Context, req FleetRequest) (*FleetStatus, error)
	FleetForget(ctx context.Context, req FleetRequest) (*FleetStatus, error)
}

// maxBody bounds a request body; every request here is small.
const maxBody = 1 << 20

// Handler serves the API under /api/. It does no authentication: the socket
// is guarded by its file mode, the admin listener by its token.
func Handler(api API, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := api.Status(r.Context(), r.URL.Query().Get("app"))
		reply(w, log, st, err)
	})
	mux.HandleFunc("POST /api/deploy", func(w http.ResponseWriter, r *http.Request) {
		var req DeployRequest
		if !decode(w, r, &req) {
			return
		}
		stream(w, r, log, func(progress func(deploy.Progress)) (*deploy.Deploy, error) {
			return api.Deploy(r.Context(), req, progress)
		})
	})
	mux.HandleFunc("POST /api/rollback", func(w http.ResponseWriter, r *http.Request) {
		var req RollbackRequest
		if !decode(w, r, &req) {
			return
		}
		stream(w, r, log, func(progress func(deploy.Progress)) (*deploy.Deploy, error) {
			return api.Rollback(r.Context(), req, progress)
		})
	})
	for _, mode := range []string{"readonly", "maintenance", "pause", "resume"} {
		mux.HandleFunc("POST /api/"+mode, func(w http.ResponseWriter, r *http.Request) {
			var req ModeRequest
			if !decode(w, r, &req) {
				return
			}
			if err := api.SetMode(r.Context(), mode, req); err != nil {
				reply(w, log, nil, err)
				return
			}
			st, err := api.Status(r.Context(), req.App)
			reply(w, log, st, err)
		})
	}
	mux.HandleFunc("GET /api/events", func(w http.ResponseWriter, r *http.Request) {
		after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
		limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
		if err != nil || limit <= 0 || limit > 1000 {
			limit = 100
		}
		ev, err := api.Events(r.Context(), after, limit)
		reply(w, log, ev, err)
	})
	mux.HandleFunc("POST /api/upgrade", func(w http.ResponseWriter, r *http.Request) {
		up, err := api.Upgrade(r.Context())
		reply(w, log, up, err)
	})
	mux.HandleFunc("GET /api/releases", func(w http.ResponseWriter, r *http.Request) {
		rel, err := api.Releases(r.Context(), r.URL.Query().Get("app"))
		reply(w, log, rel, err)
	})
	mux.HandleFunc("GET /api/logs", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		lines, err := strconv.Atoi(q.Get("lines"))
		if err != nil || lines < 0 {
			lines = 20
		}
		lw := &lazyWriter{w: w}
		err = api.Logs(r.Context(), lw, q.Get("app"), lines, q.Get("follow") == "1")
		if err != nil && !lw.started {
			reply(w, log, nil, err)
		}
	})
	if s, ok := api.(SwitchoverAPI); ok {
		switchoverRoutes(mux, s, log)
	}
	if d, ok := api.(DBStatusAPI); ok {
		dbStatusRoutes(mux, d, log)
	}
	fleetRoutes(mux, api, log)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, Error{Error: fmt.Sprintf("no API endpoint %s %s; see docs/api.md", r.Method, r.URL.Path)})
	})
	return mux
}

// decode reads a JSON request body strictly: unknown fields are an error,
// so a typo in a script is found, not ignored.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && err != io.EOF {
		writeJSON(w, http.StatusBadRequest, Error{Error: "malformed request body: " + err.Error()})
		return false
	}
	return true
}

// stream runs a deploy-like call. With Accept: application/x-ndjson each
// progress event is a line as it happens; otherwise the result comes whole.
func stream(w http.ResponseWriter, r *http.Request, log *slog.Logger, call func(func(deploy.Progress)) (*deploy.Deploy, error)) {
	if r.Header.Get("Accept") != "application/x-ndjson" {
		dep, err := call(nil)
		if err != nil && dep == nil {
			reply(w, log, nil, err)
			return
		}
		if err != nil {
			writeJSON(w, statusOf(err), Line{Deploy: dep, Error: err.Error()})
			return
		}
		reply(w, log, dep, nil)
		return
	}
	// The stream starts with the first progress line, so that a request
	// refused before anything happened still gets its own status code.
	var mu sync.Mutex // progress may come from the deploy's goroutines
	started := false
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	send := func(l Line) {
		mu.Lock()
		defer mu.Unlock()
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		enc.Encode(l) // a client that left does not stop the deploy
		if flusher != nil {
			flusher.Flush()
		}
	}
	dep, err := call(func(p deploy.Progress) { send(Line{Progress: &p}) })
	mu.Lock()
	refused := !started && err != nil && dep == nil
	mu.Unlock()
	switch {
	case refused:
		reply(w, log, nil, err)
	case err != nil:
		send(Line{Deploy: dep, Error: err.Error(), Interrupted: errors.Is(err, deploy.ErrInterrupted)})
	default:
		send(Line{Deploy: dep})
	}
}

func reply(w http.ResponseWriter, log *slog.Logger, v any, err error) {
	if err != nil {
		status := statusOf(err)
		if status == http.StatusInternalServerError {
			log.Error("control API", "error", err)
		}
		writeJSON(w, status, Error{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// statusOf maps an error to its HTTP status.
func statusOf(err error) int {
	var unknown *gateway.UnknownAppError
	switch {
	case errors.As(err, &unknown), errors.Is(err, deploy.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, deploy.ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, deploy.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, deploy.ErrUnavailable), errors.Is(err, deploy.ErrInterrupted):
		return http.StatusServiceUnavailable
	case errors.Is(err, deploy.ErrFailed):
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// lazyWriter starts a text/plain answer with its first byte, so that an
// error before any output can still be answered with its status code, and
// flushes every write so that followed logs arrive as they are written.
type lazyWriter struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		l.w.WriteHeader(http.StatusOK)
		l.started = true
	}
	n, err := l.w.Write(p)
	if f, ok := l.w.(http.Flusher); ok {
		f.Flush()
	}
	return n, err
}
