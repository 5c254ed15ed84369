package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// liveApp names the live workload's sessions, so that the wait sampler can
// tell them from the backfill's.
const liveApp = "handoff_bench_live"

func withAppName(dbURL, name string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// waitSampler looks at what the live workload's sessions are doing every
// few milliseconds (pg_stat_activity): which wait events a phase adds, and
// what the live sessions were waiting for in the longest write gap — the
// answer to "what makes a live write wait".
type waitSampler struct {
	db   *sql.DB
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	samples []waitSample
}

type waitSample struct {
	at     time.Time
	active int            // live sessions running a statement
	events map[string]int // of those, how many per wait event ("CPU" for none)
}

const waitEvery = 10 * time.Millisecond

func startWaits(dbURL string) (*waitSampler, error) {
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	w := &waitSampler{db: db, done: make(chan struct{})}
	w.wg.Add(1)
	go w.run()
	return w, nil
}

func (w *waitSampler) run() {
	defer w.wg.Done()
	t := time.NewTicker(waitEvery)
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
		}
		rows, err := w.db.QueryContext(context.Background(), `SELECT COALESCE(wait_event_type || ':' || wait_event, 'CPU'), count(*)
			FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' GROUP BY 1`, liveApp)
		if err != nil {
			continue
		}
		s := waitSample{at: time.Now(), events: map[string]int{}}
		for rows.Next() {
			var ev string
			var n int
			if rows.Scan(&ev, &n) == nil {
				s.events[ev] += n
				s.active += n
			}
		}
		rows.Close()
		w.mu.Lock()
		w.samples = append(w.samples, s)
		w.mu.Unlock()
	}
}

func (w *waitSampler) stop() {
	close(w.done)
	w.wg.Wait()
	w.db.Close()
}

// summary says, over [from, to), how many live sessions were running a
// statement on average and the share of them in each of the top wait
// events: "2.1 active: CPU 60%, LWLock:WALWrite 25%, ...".
func (w *waitSampler) summary(from, to time.Time) string {
	if w == nil {
		return ""
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	total, n := map[string]int{}, 0
	all := 0
	for _, s := range w.samples {
		if s.at.Before(from) || !s.at.Before(to) {
			continue
		}
		n++
		all += s.active
		for ev, c := range s.events {
			total[ev] += c
		}
	}
	if n == 0 {
		return "no samples"
	}
	if all == 0 {
		return fmt.Sprintf("%d looks, no live statement running", n)
	}
	evs := make([]string, 0, len(total))
	for ev := range total {
		evs = append(evs, ev)
	}
	sort.Slice(evs, func(i, j int) bool { return total[evs[i]] > total[evs[j]] })
	var parts []string
	for _, ev := range evs[:min(len(evs), 4)] {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", ev, 100*float64(total[ev])/float64(all)))
	}
	return fmt.Sprintf("%.1f active: %s", float64(all)/float64(n), strings.Join(parts, ", "))
}

// p99Of is the p99 of ds (sorted in place), 0 for none.
func p99Of(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)*99/100]
}
