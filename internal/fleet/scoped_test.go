package fleet

import (
	"context"
	"testing"

	"github.com/handoff-dev/handoff/internal/store"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// TestScopedStore: two nodes on one Postgres state each have their own
// route of app web, share the modes, and an unscoped route from before the
// store was shared is read until the node writes its own.
func TestScopedStore(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, testdb.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	type doc struct{ Who string }
	if err := st.Put(ctx, "app", "web", doc{"legacy"}); err != nil {
		t.Fatal(err)
	}
	a, b := Scoped(st, "web-1"), Scoped(st, "web-2")
	get := func(s store.Store, kind, key string) string {
		var d doc
		if ok, err := s.Get(ctx, kind, key, &d); err != nil || !ok {
			return "missing"
		}
		return d.Who
	}
	if got := get(a, "app", "web"); got != "legacy" {
		t.Fatalf("a node without its own route reads the one from before: %s", got)
	}
	if err := a.Put(ctx, "app", "web", doc{"web-1"}); err != nil {
		t.Fatal(err)
	}
	if err := b.PutAll(ctx, store.Put{Kind: "app", Key: "web", Value: doc{"web-2"}}, store.Put{Kind: "modes", Key: "*", Value: doc{"web-2"}}); err != nil {
		t.Fatal(err)
	}
	if get(a, "app", "web") != "web-1" || get(b, "app", "web") != "web-2" {
		t.Fatalf("each node its own route: %s %s", get(a, "app", "web"), get(b, "app", "web"))
	}
	if get(a, "modes", "*") != "web-2" {
		t.Fatal("modes are the fleet's: web-1 reads what web-2 wrote")
	}
	docs, err := a.List(ctx, "app")
	if err != nil || len(docs) != 1 || docs[0].Key != "web" || string(docs[0].Body) != `{"Who":"web-1"}` {
		t.Fatalf("web-1 lists its own route only, unprefixed: %+v %v", docs, err)
	}
	if err := a.Delete(ctx, "app", "web"); err != nil {
		t.Fatal(err)
	}
	if get(a, "app", "web") != "missing" || get(b, "app", "web") != "web-2" {
		t.Fatalf("a delete removes web-1's route and the old one, not web-2's: %s %s", get(a, "app", "web"), get(b, "app", "web"))
	}
}

func TestReleasesOf(t *testing.T) {
	r := Report{
		Releases:  map[string][]string{"web": {"v42", "v41"}, "api": {"v7"}},
		Instances: map[string]map[string]int{"web": {"v42": 3, "v41": 1}},
	}
	for app, want := range map[string]string{"web": "v42 ×3+v41 ×1", "api": "v7", "none": ""} {
		if got := r.ReleasesOf(app); got != want {
			t.Errorf("ReleasesOf(%s) = %q, want %q", app, got, want)
		}
	}
}
