package store

import (
	"context"
	"testing"

	"github.com/handoff-dev/handoff/internal/testdb"
)

// TestStoreContract runs one body against every backend.
func TestStoreContract(t *testing.T) {
	backends := map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return testdb.SQLite(t) },
		"postgres": func(t *testing.T) string { return testdb.Postgres(t) },
	}
	for name, dsn := range backends {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, err := Open(ctx, dsn(t))
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := s.Close(); err != nil {
					t.Error(err)
				}
			}()
			type doc struct{ N int }
			var got doc
			if ok, err := s.Get(ctx, "app", "web", &got); ok || err != nil {
				t.Fatalf("missing doc: ok=%v err=%v", ok, err)
			}
			for i := 1; i <= 2; i++ {
				if err := s.Put(ctx, "app", "web", doc{i}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.PutAll(ctx, Put{"app", "api", doc{7}}, Put{"deploy", "api-1", doc{1}}); err != nil {
				t.Fatal(err)
			}
			if err := s.PutAll(ctx, Put{"deploy", "api-2", doc{2}}, Put{"deploy", "bad", func() {}}); err == nil {
				t.Fatal("a document that cannot be encoded should fail the whole write")
			}
			if ok, _ := s.Get(ctx, "deploy", "api-2", &got); ok {
				t.Fatal("a failed PutAll wrote part of its documents")
			}
			if ok, err := s.Get(ctx, "app", "web", &got); !ok || err != nil || got.N != 2 {
				t.Fatalf("get after put: %v %v %+v", ok, err, got)
			}
			docs, err := s.List(ctx, "app")
			if err != nil || len(docs) != 2 || docs[0].Key != "api" {
				t.Fatalf("list: %v %+v", err, docs)
			}
			if err := s.Delete(ctx, "app", "api"); err != nil {
				t.Fatal(err)
			}
			if docs, _ := s.List(ctx, "app"); len(docs) != 1 {
				t.Fatalf("after delete: %+v", docs)
			}
			for _, m := range []string{"one", "two", "three"} {
				if _, err := s.Append(ctx, Event{App: "web", Kind: "deploy", Message: m}); err != nil {
					t.Fatal(err)
				}
			}
			evs, err := s.Events(ctx, 0, 2)
			if err != nil || len(evs) != 2 || evs[0].Message != "one" || evs[0].Time.IsZero() {
				t.Fatalf("events: %v %+v", err, evs)
			}
			evs, _ = s.Events(ctx, evs[1].ID, 10)
			if len(evs) != 1 || evs[0].Message != "three" {
				t.Fatalf("events after: %+v", evs)
			}
		})
	}
}
