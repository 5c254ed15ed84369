package dashboard

import (
	"context"
	"fmt"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/store"
)

const (
	// shownEvents is how many of the log's last events the page starts with.
	shownEvents = 50
	// eventPage and maxEventPages bound what one poll of a stream reads.
	eventPage     = 100
	maxEventPages = 5
)

// tailEvents returns the last n events of the log, oldest first. The API
// reads the log forward from an ID only, so the last ID is found by a
// binary search on "is there an event after x?": about 2·log2(last ID)
// one-row queries on the log's primary key, once per page view.
func tailEvents(ctx context.Context, api control.API, n int) ([]store.Event, error) {
	after := func(id int64) (bool, error) {
		ev, err := api.Events(ctx, id, 1)
		if err != nil {
			return false, fmt.Errorf("read event log: %w", err)
		}
		return len(ev.Events) > 0, nil
	}
	// Invariant: an event after lo, none after hi.
	lo, hi := int64(0), int64(64)
	if ok, err := after(lo); err != nil || !ok {
		return nil, err
	}
	for {
		ok, err := after(hi)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		lo, hi = hi, hi*2
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ok, err := after(mid)
		if err != nil {
			return nil, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	// hi is the last ID. IDs may have gaps (a Postgres sequence skips on a
	// rollback): widen the window until it holds n events, within reason.
	var events []store.Event
	for span := int64(n); ; span *= 2 {
		from := max(0, hi-span)
		ev, err := api.Events(ctx, from, int(span))
		if err != nil {
			return nil, fmt.Errorf("read event log: %w", err)
		}
		events = ev.Events
		if len(events) >= n || from == 0 || span >= maxTailSpan*int64(n) {
			break
		}
	}
	return events[max(0, len(events)-n):], nil
}

// maxTailSpan bounds how far tailEvents widens its window, in multiples of
// the events it wants: a log that sparse shows fewer events.
const maxTailSpan = 64

// eventsAfter returns the events after id, oldest first, reading at most
// maxEventPages pages: a stream that falls further behind catches up on
// its next polls.
func eventsAfter(ctx context.Context, api control.API, id int64) ([]store.Event, error) {
	var out []store.Event
	for range maxEventPages {
		ev, err := api.Events(ctx, id, eventPage)
		if err != nil {
			return nil, fmt.Errorf("read event log: %w", err)
		}
		out = append(out, ev.Events...)
		if len(ev.Events) < eventPage {
			break
		}
		id = ev.Events[len(ev.Events)-1].ID
	}
	return out, nil
}
