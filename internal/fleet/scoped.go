package fleet

import (
	"context"
	"slices"
	"strings"

	"github.com/handoff-dev/handoff/internal/store"
)

// nodeKinds are the store kinds that describe one host: its routes (app),
// its deploys, its release records (a release directory is on a host) and
// a retiring process's holdover note. Every other kind is the fleet's:
// modes apply fleet-wide, instance records already carry their node's ID,
// the event log is one log.
var nodeKinds = []string{"app", "deploy", "release", "holding"}

// scoped is a Store shared by a fleet in which each node keeps its own
// documents of the node kinds under its name.
type scoped struct {
	store.Store
	prefix string
}

// Scoped returns st as node sees it: documents of the node kinds are kept
// under "@node/" (several nodes each have their own "web" route), the rest
// are shared. A document written before the store was shared (a single
// node on Postgres, upgraded) is still read where the node has none of its
// own, so an upgrade keeps its routes.
func Scoped(st store.Store, node string) store.Store {
	return &scoped{Store: st, prefix: "@" + node + "/"}
}

func isNodeKind(kind string) bool { return slices.Contains(nodeKinds, kind) }

func (s *scoped) key(kind, key string) string {
	if isNodeKind(kind) {
		return s.prefix + key
	}
	return key
}

func (s *scoped) Get(ctx context.Context, kind, key string, v any) (bool, error) {
	ok, err := s.Store.Get(ctx, kind, s.key(kind, key), v)
	if ok || err != nil || !isNodeKind(kind) {
		return ok, err
	}
	return s.Store.Get(ctx, kind, key, v)
}

func (s *scoped) Put(ctx context.Context, kind, key string, v any) error {
	return s.Store.Put(ctx, kind, s.key(kind, key), v)
}

func (s *scoped) PutAll(ctx context.Context, docs ...store.Put) error {
	out := make([]store.Put, len(docs))
	for i, d := range docs {
		out[i] = store.Put{Kind: d.Kind, Key: s.key(d.Kind, d.Key), Value: d.Value}
	}
	return s.Store.PutAll(ctx, out...)
}

// Delete removes the node's document and an unscoped one of the same key,
// which would otherwise be read in its place.
func (s *scoped) Delete(ctx context.Context, kind, key string) error {
	if isNodeKind(kind) {
		if err := s.Store.Delete(ctx, kind, key); err != nil {
			return err
		}
	}
	return s.Store.Delete(ctx, kind, s.key(kind, key))
}

// List returns this node's documents of a node kind (keys without the
// prefix), and unscoped ones it has none of its own for; other nodes'
// documents are not listed.
func (s *scoped) List(ctx context.Context, kind string) ([]store.Doc, error) {
	docs, err := s.Store.List(ctx, kind)
	if err != nil || !isNodeKind(kind) {
		return docs, err
	}
	mine := map[string]bool{}
	var out []store.Doc
	for _, d := range docs {
		if k, ok := strings.CutPrefix(d.Key, s.prefix); ok {
			mine[k] = true
			out = append(out, store.Doc{Key: k, Body: d.Body})
		}
	}
	for _, d := range docs {
		if !strings.HasPrefix(d.Key, "@") && !mine[d.Key] {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b store.Doc) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}
