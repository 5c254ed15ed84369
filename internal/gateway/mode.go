package gateway

import (
	"net/http"

	"github.com/handoff-dev/handoff/internal/config"
	"time"
)

// Modes are the modes switched on for an app (or for all apps). They combine:
// read-only can stay on through a pause, and maintenance overrides both.
type Modes struct {
	ReadOnly    *ReadOnly    `json:"readonly,omitempty"`
	Maintenance *Maintenance `json:"maintenance,omitempty"`
	Pause       *Pause       `json:"pause,omitempty"`
}

// ReadOnly refuses writes, serves reads, and shows a banner.
type ReadOnly struct {
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until,omitzero"` // switches itself off then, if set
	Banner string    `json:"banner,omitempty"`
}

// Maintenance answers every request with the maintenance page.
type Maintenance struct {
	Since      time.Time       `json:"since"`
	RetryAfter config.Duration `json:"retry_after"`
}

// Pause holds new requests until resumed, each for at most Max.
type Pause struct {
	Since time.Time       `json:"since"`
	Max   config.Duration `json:"max"`
}

// over layers an app's own modes over the global ones.
func (m Modes) over(global Modes) Modes {
	if m.ReadOnly == nil {
		m.ReadOnly = global.ReadOnly
	}
	if m.Maintenance == nil {
		m.Maintenance = global.Maintenance
	}
	if m.Pause == nil {
		m.Pause = global.Pause
	}
	return m
}

// Name is the mode in effect: maintenance beats paused beats read-only.
func (m Modes) Name() string {
	switch {
	case m.Maintenance != nil:
		return "maintenance"
	case m.Pause != nil:
		return "paused"
	case m.ReadOnly != nil:
		return "readonly"
	}
	return "normal"
}

// mode is what the hot path asks about each request: go on to an instance,
// or be answered (or held) here.
type mode interface {
	String() string
	// admit reports whether r should go on to an instance; when it returns
	// false the mode has answered the request itself.
	admit(g *Gateway, w http.ResponseWriter, r *http.Request, a *appRoute) bool
}

type normalMode struct{}

func (normalMode) String() string { return "normal" }

func (normalMode) admit(*Gateway, http.ResponseWriter, *http.Request, *appRoute) bool { return true }

type maintenanceMode struct {
	retryAfter time.Duration
	page       []byte
}

func (maintenanceMode) String() string { return "maintenance" }

func (m maintenanceMode) admit(g *Gateway, w http.ResponseWriter, r *http.Request, a *appRoute) bool {
	if wantsHTML(r) && m.page != nil {
		setRetryAfter(w, m.retryAfter)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write(m.page)
		return false
	}
	g.refuse(w, r, a, http.StatusServiceUnavailable, "maintenance",
		"This site is down for maintenance and will be back shortly.", m.retryAfter, time.Now())
	return false
}
