package tcpproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// DialTimeout bounds connecting to a target; a live target on a LAN
// answers in milliseconds, and one that does not is tried no longer before
// the next is (the gateway's bound too).
const DialTimeout = 3 * time.Second

var dialer = &net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}

// retryEvery is the first pause between rounds of dials when no target
// accepted; it doubles up to retryMax, until the app's hold_max.
const (
	retryEvery = 20 * time.Millisecond
	retryMax   = 500 * time.Millisecond
)

// conn is one client connection and its target connection.
type conn struct {
	client, up *net.TCPConn
	once       sync.Once
}

// close closes both sides (again is harmless).
func (c *conn) close() {
	c.once.Do(func() {
		c.client.Close()
		c.up.Close()
	})
}

// handle serves one client connection: dial a target, splice, close.
func (p *Proxy) handle(a *app, client *net.TCPConn) {
	c, t := p.connect(a, client)
	if c == nil {
		client.Close()
		return
	}
	defer t.untrack(c)
	c.splice(t)
}

// connect dials a target for a new connection. A target that refuses, or
// resets the connection before either side has said a word (a process
// dying with connections in its accept queue), is marked down and the
// next is tried at once, so a client never sees a target that died; when
// none accepts, it tries again, all of them, for up to the app's hold_max
// (a deploy's new targets coming up, a restart), then gives up and the
// client's connection closes unanswered.
func (p *Proxy) connect(a *app, client *net.TCPConn) (*conn, *target) {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.HoldMax.D())
	defer cancel()
	wait := retryEvery
	for {
		var tried []*target
		closedAtOnce := false
		for {
			t := a.snap.Load().pick(tried)
			if t == nil {
				break
			}
			tried = append(tried, t)
			up, err := dialer.DialContext(ctx, "tcp", t.addr)
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				t.dialFailed(p, err)
				continue
			}
			c := &conn{client: client, up: up.(*net.TCPConn)}
			if !t.track(c) {
				// The target began to drain between the pick and now: a
				// snapshot without it is out, so the next pick is another.
				up.Close()
				tried = tried[:len(tried)-1]
				continue
			}
			if gone, reset := c.opening(openingWindow); gone {
				// The target ended the connection before either side
				// said a word: nothing was sent to it, so another target
				// may take the client as if this one had refused.
				t.untrack(c)
				up.Close()
				if reset {
					t.dialFailed(p, errResetAtOnce)
					continue
				}
				closedAtOnce = true
				continue
			}
			return c, t
		}
		if closedAtOnce {
			// Every target tried closed at once, without a reset: that is
			// their answer, and the client gets it.
			return nil, nil
		}
		if len(tried) == 0 && a.snap.Load().empty() {
			// No route at all (never deployed): nothing will come up.
			a.refuse(noTarget)
			return nil, nil
		}
		select {
		case <-ctx.Done():
			a.refuse(noTarget)
			p.log.Warn("tcp connection closed: no target accepted within hold_max", "app", a.name, "hold_max", a.cfg.HoldMax, "client", client.RemoteAddr().String())
			return nil, nil
		case <-time.After(wait):
		}
		wait = min(2*wait, retryMax)
	}
}

func (s *snapshot) empty() bool {
	for _, p := range s.pools {
		if len(p.targets) > 0 {
			return false
		}
	}
	return true
}

// chunk is how much one splice call moves before the bytes are counted:
// io.Copy between two *net.TCPConn uses splice(2), which counts only when
// it returns, so a long connection's bytes show in steps of at most this.
const chunk = 256 << 10

// splice copies both ways until both directions end. A direction that
// ends cleanly (EOF) half-closes its destination, so a client that shuts
// its sending side still gets the whole answer; one that fails (a reset,
// a drain's deadline) closes both connections.
func (c *conn) splice(t *target) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.pipe(c.up, c.client, t.toTarget)
	}()
	c.pipe(c.client, c.up, t.toClient)
	<-done
	c.close()
}

// pipe copies src to dst until src ends.
func (c *conn) pipe(dst, src *net.TCPConn, count func(int64)) {
	for {
		n, err := io.CopyN(dst, src, chunk)
		count(n)
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			dst.CloseWrite()
		} else {
			c.close()
		}
		return
	}
}

// openingWindow bounds how long a new connection is watched for its
// target's first word (or the client's) before the splice begins: past
// it, or once the client has spoken, the connection is the target's and
// is never moved (what the client sent may have been acted on).
const openingWindow = 250 * time.Millisecond

var errResetAtOnce = errors.New("reset the connection before a word was said")

// opening watches a new connection, without reading from it, until one
// side speaks or window passes, and reports whether the target closed it
// first (gone) and whether by a reset. Only the target's silence is
// waited for: a client that speaks first ends the watch at once, so a
// client-first protocol pays nothing, and a server-first one (ssh, SMTP)
// is moved off a target that died between its accept and its greeting.
func (c *conn) opening(window time.Duration) (gone, reset bool) {
	deadline := time.Now().Add(window)
	c.up.SetReadDeadline(deadline)
	c.client.SetReadDeadline(deadline)
	ups, clients := make(chan peeked, 1), make(chan peeked, 1)
	go func() { ups <- peek(c.up) }()
	go func() { clients <- peek(c.client) }()
	var up peeked
	select {
	case up = <-ups:
		c.client.SetReadDeadline(time.Now()) // wake the client's watch
		<-clients
	case <-clients:
		c.up.SetReadDeadline(time.Now())
		up = <-ups // may still say the target closed at the same moment
	}
	c.up.SetReadDeadline(time.Time{})
	c.client.SetReadDeadline(time.Time{})
	if up.n > 0 || errors.Is(up.err, os.ErrDeadlineExceeded) {
		return false, false
	}
	return true, errors.Is(up.err, syscall.ECONNRESET)
}

// peeked is what a look at a socket saw: bytes waiting (n > 0), an orderly
// close (n == 0, no error), a reset, or the deadline.
type peeked struct {
	n   int
	err error
}

// peek waits until c is readable and looks at one byte without taking it.
func peek(c *net.TCPConn) peeked {
	rc, err := c.SyscallConn()
	if err != nil {
		return peeked{err: err}
	}
	var res peeked
	buf := make([]byte, 1)
	if err := rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
			return false // not yet: wait for the poller
		}
		res = peeked{n: n, err: err}
		return true
	}); err != nil {
		res.err = err
	}
	return res
}
