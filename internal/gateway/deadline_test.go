package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingBackend answers /fast at once and /hang never (it holds the
// connection for 2 s), and counts the connections requests came on (the
// health checks' own, one per check, are not counted).
func countingBackend(t *testing.T) (addr string, accepted *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int64)
	var conns sync.WaitGroup
	t.Cleanup(func() { l.Close(); conns.Wait() })
	conns.Add(1)
	go func() {
		defer conns.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for first := true; ; first = false {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if first && r.URL.Path != "/healthz" {
						accepted.Add(1)
					}
					io.Copy(io.Discard, r.Body)
					if r.URL.Path == "/hang" {
						time.Sleep(2 * time.Second)
						return
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	return l.Addr().String(), accepted
}

// getStatus sends one request on a new client connection and returns its status.
func getStatus(t *testing.T, addr, path string) (int, time.Duration) {
	t.Helper()
	resp, _, took := exchangeRaw(t, addr, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n")
	return resp.StatusCode, took
}

// The response timeout's deadline is kept on an upstream connection from
// one request to the next when the answer needed no read after its head
// (armTimeout, keepDeadline). It must still bound the next request's wait,
// and a kept deadline that passed while the connection sat idle must not
// cost the connection.
func TestKeptResponseTimeout(t *testing.T) {
	addr, accepted := countingBackend(t)
	_, front := frontDoor(t, addr) // response timeout 500 ms

	// Answered at once: the deadline stays on the connection.
	if status, _ := getStatus(t, front, "/fast"); status != http.StatusOK {
		t.Fatalf("status %d, want 200", status)
	}
	conns := accepted.Load()

	// Idle for longer than the timeout: the kept deadline has passed.
	// The connection is still good and is used again.
	time.Sleep(700 * time.Millisecond)
	if status, _ := getStatus(t, front, "/fast"); status != http.StatusOK {
		t.Fatalf("after an idle spell: status %d, want 200", status)
	}
	if n := accepted.Load(); n != conns {
		t.Fatalf("after an idle spell the gateway opened %d new connections, want the idle one used again", n-conns)
	}

	// Right after an answer (deadline kept, not set again): a silent
	// instance still gets the request a 504 within the timeout.
	if status, _ := getStatus(t, front, "/fast"); status != http.StatusOK {
		t.Fatalf("status %d, want 200", status)
	}
	status, took := getStatus(t, front, "/hang")
	if status != http.StatusGatewayTimeout {
		t.Fatalf("silent instance: status %d, want 504", status)
	}
	if took > 1500*time.Millisecond {
		t.Fatalf("silent instance answered after %v, want about the 500ms response timeout", took)
	}
}
