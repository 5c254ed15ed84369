package dashboard

import (
	"testing"

	"github.com/handoff-dev/handoff/internal/store"
)

func TestTailEvents(t *testing.T) {
	for _, c := range []struct {
		name string
		ids  []int64
		n    int
		want []int64 // first and last ID, and how many
	}{
		{"empty", nil, 50, nil},
		{"fewer than n", []int64{1, 2, 3}, 50, []int64{1, 3, 3}},
		{"exactly a power of two", seq(1, 64, 1), 10, []int64{55, 64, 10}},
		{"long", seq(1, 100_000, 1), 50, []int64{99_951, 100_000, 50}},
		{"gaps", seq(5, 3000, 7), 50, []int64{2994 - 49*7, 2994, 50}},
	} {
		api := newFakeAPI()
		for _, id := range c.ids {
			api.events = append(api.events, store.Event{ID: id, Message: "e"})
		}
		got, err := tailEvents(t.Context(), api, c.n)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if c.want == nil {
			if len(got) != 0 {
				t.Errorf("%s: %d events, want none", c.name, len(got))
			}
			continue
		}
		if len(got) != int(c.want[2]) || got[0].ID != c.want[0] || got[len(got)-1].ID != c.want[1] {
			t.Errorf("%s: %d events from %d to %d, want %v", c.name, len(got), got[0].ID, got[len(got)-1].ID, c.want)
		}
	}
}

func seq(from, to, step int64) []int64 {
	var out []int64
	for i := from; i <= to; i += step {
		out = append(out, i)
	}
	return out
}
