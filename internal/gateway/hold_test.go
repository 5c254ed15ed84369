package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
)

// acceptOrder is an instance that answers every request with
// Connection: close and records, in the order the kernel hands it the
// connections, the query parameter i of each request other than a health
// check. Connections are accepted one at a time, so the order is the order
// in which the gateway connected — the order of dispatch, exactly, since a
// request answered with Connection: close leaves no connection to reuse.
type acceptOrder struct {
	ln    net.Listener
	mu    sync.Mutex
	order []int          // by accept order; -1 for a health check
	seen  map[int]string // i → the order it was accepted in, for messages
}

func newAcceptOrder(t *testing.T) *acceptOrder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &acceptOrder{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go b.serve()
	return b
}

func (b *acceptOrder) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		slot := len(b.order)
		b.order = append(b.order, -1)
		b.mu.Unlock()
		go func() {
			defer c.Close()
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err != nil {
				return
			}
			if i, err := strconv.Atoi(req.URL.Query().Get("i")); err == nil {
				b.mu.Lock()
				b.order[slot] = i
				b.mu.Unlock()
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
		}()
	}
}

// dispatched returns the requests' i in the order they reached the instance.
func (b *acceptOrder) dispatched() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []int
	for _, i := range b.order {
		if i >= 0 {
			out = append(out, i)
		}
	}
	return out
}

// overtaken counts the requests that reached the instance after one that
// arrived at the gateway later than they did.
func overtaken(order []int) int {
	n, highest := 0, -1
	for _, i := range order {
		if i < highest {
			n++
		}
		highest = max(highest, i)
	}
	return n
}

// TestResumeReleasesInArrivalOrder: requests held by a pause reach the
// instance in the order they arrived at the gateway — each one is
// dispatched only once the one before it has been.
func TestResumeReleasesInArrivalOrder(t *testing.T) {
	b := newAcceptOrder(t)
	g, url := newGateway(t, Pool{Release: "v1", Targets: []string{b.ln.Addr().String()}, Weight: 1})
	if err := g.SetModes("web", Modes{Pause: &Pause{Since: time.Now(), Max: config.Duration(20 * time.Second)}}); err != nil {
		t.Fatal(err)
	}
	const n = 60
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(fmt.Sprintf("%s/?i=%d", url, i))
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("request %d: status %d", i, resp.StatusCode)
			}
		}()
		// The next one arrives only once this one is held.
		waitFor(t, func() bool { return g.Status()[0].Held == i+1 })
	}
	if err := g.SetModes("web", Modes{}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	order := b.dispatched()
	if len(order) != n {
		t.Fatalf("%d of %d requests reached the instance", len(order), n)
	}
	if k := overtaken(order); k > 0 {
		t.Errorf("%d of %d held requests were overtaken by one that arrived after them; dispatch order: %v", k, n, order)
	}
}

// TestReleasedLinePassesAStalledRequest: a released request that cannot be
// dispatched (its body never comes) delays the one behind it by at most
// releaseStep, not for as long as it stalls.
func TestReleasedLinePassesAStalledRequest(t *testing.T) {
	b := backend(t, "v1")
	g, url := newGateway(t, Pool{Release: "v1", Targets: []string{addr(b)}, Weight: 1})
	if err := g.SetModes("web", Modes{Pause: &Pause{Since: time.Now(), Max: config.Duration(20 * time.Second)}}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", url[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n") // and no body
	waitFor(t, func() bool { return g.Status()[0].Held == 1 })
	done := make(chan int, 1)
	go func() {
		resp, err := http.Get(url + "/")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	waitFor(t, func() bool { return g.Status()[0].Held == 2 })
	resumed := time.Now()
	if err := g.SetModes("web", Modes{}); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 200 {
			t.Errorf("the request behind a stalled one: status %d", code)
		}
		if d := time.Since(resumed); d < releaseStep/2 {
			t.Errorf("the request behind a stalled one went on after %s, before its turn", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stalled request held up the line behind it")
	}
}

// TestLineAheadGoesFirst: a released line waits for the line ahead of it
// (a predecessor process's, see SetLineAhead) to go on, for a second at most.
func TestLineAheadGoesFirst(t *testing.T) {
	b := backend(t, "v1")
	g, url := newGateway(t, Pool{Release: "v1", Targets: []string{addr(b)}, Weight: 1})
	for _, c := range []struct {
		name     string
		after    time.Duration // when the line ahead has gone on; 0: never
		min, max time.Duration
	}{
		{"ahead goes on", 300 * time.Millisecond, 300 * time.Millisecond, lineAheadMax - 100*time.Millisecond},
		{"ahead never goes on", 0, lineAheadMax, 3 * lineAheadMax},
	} {
		t.Run(c.name, func(t *testing.T) {
			g.SetLineAhead(func(app string) <-chan struct{} {
				ch := make(chan struct{})
				if c.after > 0 {
					time.AfterFunc(c.after, func() { close(ch) })
				}
				return ch
			})
			if err := g.SetModes("web", Modes{Pause: &Pause{Since: time.Now(), Max: config.Duration(20 * time.Second)}}); err != nil {
				t.Fatal(err)
			}
			done := make(chan int, 1)
			go func() {
				resp, err := http.Get(url + "/")
				if err != nil {
					done <- 0
					return
				}
				resp.Body.Close()
				done <- resp.StatusCode
			}()
			waitFor(t, func() bool { return g.Status()[0].Held == 1 })
			resumed := time.Now()
			if err := g.SetModes("web", Modes{}); err != nil {
				t.Fatal(err)
			}
			if code := <-done; code != 200 {
				t.Fatalf("status %d", code)
			}
			if d := time.Since(resumed); d < c.min || d > c.max {
				t.Errorf("the line went on %s after the resume; want %s to %s", d.Round(time.Millisecond), c.min, c.max)
			}
		})
	}
}
