package store

import (
	"context"
	"net"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/testdb"
)

// TestOperationWithoutDeadlineIsBounded: a state database that stops
// answering (here a link that swallows every byte, as a dropped route
// does) makes a store operation fail after opTimeout rather than hang
// whoever asked — `handoff status`, a deploy step.
func TestOperationWithoutDeadlineIsBounded(t *testing.T) {
	dsn := testdb.Postgres(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	var cut atomic.Bool
	var conns []net.Conn // the accept loop's, closed once it is over
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepting := make(chan struct{})
	defer func() {
		ln.Close()
		<-accepting
		for _, c := range conns {
			c.Close()
		}
	}()
	go func() {
		defer close(accepting)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			conns = append(conns, c, s)
			pipe := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if err != nil {
						return
					}
					if !cut.Load() {
						if _, err := dst.Write(buf[:n]); err != nil {
							return
						}
					}
				}
			}
			go pipe(s, c)
			go pipe(c, s)
		}
	}()
	u.Host = ln.Addr().String()

	ctx := context.Background()
	s, err := Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put(ctx, "app", "web", 1); err != nil {
		t.Fatal(err)
	}
	defer func(d time.Duration) { opTimeout = d }(opTimeout)
	opTimeout = time.Second

	cut.Store(true)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		var v int
		_, err := s.Get(ctx, "app", "web", &v)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a Get over a link that answers nothing succeeded")
		}
		t.Logf("failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(10 * time.Second):
		t.Fatal("a Get without a deadline over a link that answers nothing still waits after 10 s")
	}
}
