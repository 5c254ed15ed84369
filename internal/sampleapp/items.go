package sampleapp

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// maxItems bounds the collection so that load tests do not grow it without end.
const maxItems = 1000

// Item is one entry of /items.
type Item struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// items is /items' collection; a write endpoint for read-only mode tests.
type items struct {
	mu   sync.Mutex
	next int64
	list []Item // the newest maxItems
}

func (s *items) add(name string) Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	it := Item{ID: s.next, Name: name}
	if len(s.list) == maxItems {
		s.list = append(s.list[:0], s.list[1:]...)
	}
	s.list = append(s.list, it)
	return it
}

func (s *items) all() []Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Item{}, s.list...)
}

func (a *app) info(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{
		"release":  a.opts.Release,
		"instance": a.instance(r),
		"time":     time.Now().UTC().Format(time.RFC3339Nano),
	})
}

func (a *app) listItems(w http.ResponseWriter, r *http.Request) {
	if a.db == nil {
		writeJSON(w, http.StatusOK, a.items.all())
		return
	}
	list, err := a.db.recent(r.Context(), 20)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// addItem takes {"name": "…"} and answers 201 with the stored item.
func (a *app) addItem(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&in); err != nil || in.Name == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body must be {"name": "…"}`})
		return
	}
	if a.db == nil {
		writeJSON(w, http.StatusCreated, a.items.add(in.Name))
		return
	}
	it, err := a.db.add(r.Context(), in.Name)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusCreated, it)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // a write error means the client left
}
