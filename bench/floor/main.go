// Command floor is an experiment, not a product: the least a Go proxy can
// do for bench/gateway's throughput cells, to tell how much of handoff's
// cost per request is its model (a goroutine per connection, the runtime's
// poller) and how much its HTTP work. It forwards a request head as it came
// (GETs without a body, no pipelining), reads the answer by its
// Content-Length and writes it back whole: no parsing beyond that, no
// header map, no routing, no checks. With FLOOR_MODE=epoll it does the same
// from one thread on its own epoll loop, as nginx does, instead.
//
// It stands in for handoff in bench/gateway, which runs it as it runs
// handoff (`serve --config FILE` for the proxy, `sampleapp …` for the
// backend, which it hands to the real binary FLOOR_HANDOFF names):
//
//	go build -o /tmp/handoff ./cmd/handoff && go build -o /tmp/floor ./bench/floor
//	FLOOR_HANDOFF=/tmp/handoff go run ./bench/gateway -handoff /tmp/floor -targets handoff,nginx -sizes 100
//
// The figures are in bench/README.md ("The floor").
package main

import (
	"bufio"
	"bytes"
	"io"
	"log"
	"net"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"syscall"

	"github.com/handoff-dev/handoff/internal/h1"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "sampleapp" {
		real := os.Getenv("FLOOR_HANDOFF")
		if real == "" {
			log.Fatal("floor: set FLOOR_HANDOFF to the handoff binary that serves the backend")
		}
		log.Fatal(syscall.Exec(real, append([]string{real}, os.Args[1:]...), os.Environ()))
	}
	if len(os.Args) != 4 || os.Args[1] != "serve" {
		log.Fatal("usage: floor serve --config FILE (as bench/gateway runs handoff)")
	}
	conf, err := os.ReadFile(os.Args[3])
	if err != nil {
		log.Fatal(err)
	}
	listen := field(conf, `listen: \["([^"]+)"\]`)
	target := field(conf, `targets: \["([^"]+)"\]`)
	if os.Getenv("FLOOR_MODE") == "epoll" {
		epollMain(listen, target)
		return
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		log.Fatal(err)
	}
	p := &pool{addr: target}
	for {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(c, p)
	}
}

// field is the first group of re in bench/gateway's handoff config.
func field(conf []byte, re string) string {
	m := regexp.MustCompile(re).FindSubmatch(conf)
	if m == nil {
		log.Fatalf("floor: %s not in the config", re)
	}
	return string(m[1])
}

// up is an upstream connection. Its request's last write is made inside
// a raw read that then waits for the answer, as handoff's writeAwait does.
type up struct {
	c     net.Conn
	s     *h1.Socket
	raw   syscall.RawConn
	br    *bufio.Reader
	head  []byte
	wrote bool
	fn    func(uintptr) bool
}

type pool struct {
	mu   sync.Mutex
	idle []*up
	addr string
}

func (p *pool) get() *up {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		u := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return u
	}
	p.mu.Unlock()
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		log.Fatal(err)
	}
	u := &up{c: c, s: h1.NewSocket(c)}
	u.raw, _ = c.(*net.TCPConn).SyscallConn()
	u.br = bufio.NewReaderSize(u.s, 16<<10)
	u.fn = func(fd uintptr) bool {
		if u.wrote {
			return true
		}
		u.wrote = true
		h1.RawSend(fd, u.head)
		return false
	}
	return u
}

func (p *pool) put(u *up) { p.mu.Lock(); p.idle = append(p.idle, u); p.mu.Unlock() }

var crlf2 = []byte("\r\n\r\n")

// serve proxies one client connection's requests, one at a time.
func serve(c net.Conn, p *pool) {
	s := h1.NewSocket(c)
	br := bufio.NewReaderSize(s, 4<<10)
	out := make([]byte, 0, 70<<10)
	first := true
	for {
		if !first && br.Buffered() == 0 {
			runtime.Gosched()
		}
		first = false
		head, err := readHead(br)
		if err != nil {
			c.Close()
			return
		}
		u := p.get()
		u.head, u.wrote = head, false
		u.raw.Read(u.fn)
		rh, err := readHead(u.br)
		if err != nil {
			log.Fatal(err)
		}
		n := contentLength(rh)
		out = append(out[:0], rh...)
		br.Discard(len(head))
		u.br.Discard(len(rh))
		start := len(out)
		out = out[:start+n]
		if _, err := io.ReadFull(u.br, out[start:]); err != nil {
			log.Fatal(err)
		}
		p.put(u)
		if _, err := s.Write(out); err != nil {
			c.Close()
			return
		}
	}
}

// readHead peeks the head through its blank line (left in br).
func readHead(br *bufio.Reader) ([]byte, error) {
	for {
		b, _ := br.Peek(br.Buffered())
		if i := bytes.Index(b, crlf2); i >= 0 {
			return b[:i+4], nil
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			return nil, err
		}
	}
}

func contentLength(h []byte) int {
	i := bytes.Index(h, []byte("Content-Length: "))
	if i < 0 {
		log.Fatalf("floor: no Content-Length in %q", h)
	}
	j := bytes.IndexByte(h[i:], '\r')
	n, _ := strconv.Atoi(string(h[i+16 : i+j]))
	return n
}
