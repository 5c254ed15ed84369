// Package store keeps handoff's persistent state: documents (an app's
// routing, a deploy, a release) by kind and key, and an append-only event
// log. Every change is written here before it takes effect, so a restarted
// server resumes from what the store says.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Store is the state store. SQLite is the default; Postgres lets several
// handoff nodes share one.
type Store interface {
	// Get decodes the document kind/key into v and reports whether it exists.
	Get(ctx context.Context, kind, key string, v any) (bool, error)
	// Put writes v as the document kind/key, replacing any earlier one, durably.
	Put(ctx context.Context, kind, key string, v any) error
	// PutAll writes several documents in one transaction: all or none.
	PutAll(ctx context.Context, docs ...Put) error
	// Delete removes kind/key; deleting a missing document is not an error.
	Delete(ctx context.Context, kind, key string) error
	// List returns every document of a kind, ordered by key.
	List(ctx context.Context, kind string) ([]Doc, error)
	// Append adds an event to the log and returns it with its ID and time set.
	Append(ctx context.Context, e Event) (Event, error)
	// Events returns up to limit events with ID > after, oldest first.
	Events(ctx context.Context, after int64, limit int) ([]Event, error)
	Close() error
}

// Put is one document to write with PutAll.
type Put struct {
	Kind, Key string
	Value     any
}

// Doc is one stored document.
type Doc struct {
	Key  string
	Body json.RawMessage
}

// Decode decodes the document's body into v.
func (d Doc) Decode(v any) error {
	if err := json.Unmarshal(d.Body, v); err != nil {
		return fmt.Errorf("decode %s: %w", d.Key, err)
	}
	return nil
}

// Event is one line of the event log: who did what to which app, and when.
type Event struct {
	ID      int64     `json:"id"`
	Time    time.Time `json:"time"`
	App     string    `json:"app,omitempty"`
	Kind    string    `json:"kind"`
	Actor   string    `json:"actor,omitempty"`
	Message string    `json:"message"`
}

// ErrClosed is returned by a store used after Close.
var ErrClosed = errors.New("store closed")

// Open opens the store named by dsn: a postgres:// URL, or a SQLite file path.
func Open(ctx context.Context, dsn string) (Store, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return openPostgres(ctx, dsn)
	}
	return openSQLite(ctx, strings.TrimPrefix(dsn, "sqlite://"))
}
