package dashboard

import (
	"net/http"
	"slices"
	"time"

	"github.com/handoff-dev/handoff/internal/store"
)

// pageData is what the dashboard page shows.
type pageData struct {
	Status statusView
	// Name is who logged in (as they gave it), "" for a Bearer request.
	Name string
	// Session is false for a Bearer request: no logout, no CSRF token.
	Session bool
	CSRF    string
	// Actor is what the page's switches put in the event log as "who".
	Actor string
	// Events are the log's last events, newest first; LastEvent is the
	// newest one's ID, where the event stream takes over.
	Events    []store.Event
	LastEvent int64
}

// page serves the dashboard, or sends whom is not logged in to /login.
func (d *Dashboard) page(w http.ResponseWriter, r *http.Request) {
	s, err := d.auth.identify(r)
	if err != nil {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	data := pageData{Actor: "dashboard"}
	if s != nil {
		data.Name, data.Session, data.CSRF = s.Name, true, d.auth.keys.csrfToken(*s)
		if s.Name != "" {
			data.Actor = s.Name + " (dashboard)"
		}
	}
	st, err := d.api.Status(r.Context(), "")
	if err != nil {
		data.Status.Problem = "read status: " + err.Error()
	} else {
		data.Status = newStatusView(st)
		data.Status.Databases = dbView(r.Context(), d.api, time.Now())
	}
	events, err := tailEvents(r.Context(), d.api, shownEvents)
	if err != nil && data.Status.Problem == "" {
		data.Status.Problem = err.Error()
	}
	if len(events) > 0 {
		data.LastEvent = events[len(events)-1].ID
	}
	slices.Reverse(events)
	data.Events = events
	d.render(w, http.StatusOK, "page.html", data)
}
