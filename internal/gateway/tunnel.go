package gateway

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/websocket"
)

// isUpgrade reports whether r asks to switch to WebSocket, the one
// protocol the gateway tunnels. Any other Upgrade goes on as a plain
// request without it (RFC 9110 §7.8 lets an intermediary ignore one): a
// tunnel to an instance that speaks h2c would hand the client an HTTP/2
// connection to the instance itself, whose requests no mode, path rule or
// header of the gateway's would ever see ("h2c smuggling").
func isUpgrade(r *http.Request) bool {
	up := r.Header["Upgrade"]
	return len(up) == 1 && strings.EqualFold(strings.TrimSpace(up[0]), "websocket") &&
		headerHasToken(r.Header, "Connection", "upgrade")
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h[key] {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// tunnel passes an Upgrade request through. If the instance switches
// protocols, the two connections are spliced until either side closes or a
// drain deadline closes the instance's side; the tunnel counts as in flight
// on its target the whole time, so a drain waits for it.
func (g *Gateway) tunnel(w http.ResponseWriter, r *http.Request, a *appRoute, start time.Time) {
	if len(a.pools) == 0 {
		g.refuse(w, r, a, http.StatusServiceUnavailable, "no_instance", "The app has no instances yet.", 5*time.Second, start)
		return
	}
	p, pinned := a.choosePool(r)
	o := outbound{readOnly: a.readOnly != nil, upgrade: r.Header.Get("Upgrade")}
	var tried []*Target
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		var t *Target
		a, t, p = g.acquire(r, a, p, tried)
		if t == nil {
			break
		}
		c, err := t.dial(r.Context())
		if err != nil {
			t.inflight.Add(-1)
			if descriptorsExhausted(err) {
				g.outOfDescriptors("dial", t.Addr, err)
			} else if refused(err) {
				t.markDown(err)
			}
			tried = append(tried, t)
			continue
		}
		defer t.inflight.Add(-1)
		if !pinned && len(a.pools) > 1 {
			w.Header().Add("Set-Cookie", pinCookie(a.cookie, p.release))
		}
		status := g.splice(w, r, c, o)
		g.served(r, a, p, t, status, 0, attempt, start)
		return
	}
	g.refuse(w, r, a, http.StatusBadGateway, "bad_gateway", "The app's instances did not answer.", 0, start)
}

// splice sends the upgrade request on c and, on 101, joins the client's
// connection to c. It returns the status the client saw.
func (g *Gateway) splice(w http.ResponseWriter, r *http.Request, c *upstreamConn, o outbound) int {
	defer c.close()
	c.begin(g.opts.ResponseTimeout)
	hb := headBufs.Get().(*[]byte)
	head := writeHead((*hb)[:0], r, o)
	_, err := c.io.Write(head)
	releaseHead(hb, head)
	if err != nil {
		g.refuse(w, r, nil, http.StatusBadGateway, "bad_gateway", "The app's instance did not answer.", 0, time.Now())
		return http.StatusBadGateway
	}
	dispatched(r)
	resp, err := g.awaitResponse(c, r)
	if err != nil {
		g.refuse(w, r, nil, http.StatusBadGateway, "bad_gateway", "The app's instance did not answer.", 0, time.Now())
		return http.StatusBadGateway
	}
	if resp.status != http.StatusSwitchingProtocols {
		x := &c.x
		*x = exchange{conn: c, resp: resp, stopCtx: noStop}
		_, ok := g.deliver(w, x, nil, r.Method)
		if !ok {
			panic(http.ErrAbortHandler)
		}
		return resp.status
	}
	header := w.Header().Clone() // the gateway's own (a pin cookie), and the 101's, as the instance sent them
	resp.head.header(header, -1, true)
	rc := http.NewResponseController(w)
	client, buf, err := rc.Hijack()
	if err != nil {
		g.refuse(w, r, nil, http.StatusBadGateway, "bad_gateway", "This connection cannot switch protocols.", 0, time.Now())
		return http.StatusBadGateway
	}
	defer client.Close()
	client.SetDeadline(time.Time{}) // the server's header timeout must not end the tunnel
	buf.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	header.Write(buf)
	buf.WriteString("\r\n")
	if err := buf.Flush(); err != nil {
		return http.StatusSwitchingProtocols
	}
	tu := &tunnel{client: client, up: c, done: make(chan struct{}),
		toUp: websocket.NewRelay(buf.Reader, c.Conn, true), toDown: websocket.NewRelay(c.br, client, false)}
	c.target.addTunnel(tu)
	defer c.target.removeTunnel(tu)
	tu.pipe()
	return http.StatusSwitchingProtocols
}

// tunnel is one WebSocket's pair of connections (the only protocol
// tunneled: see isUpgrade). It relays frame by frame, so that a drain
// deadline can end it with a Close frame at a frame boundary.
type tunnel struct {
	client  net.Conn
	up      *upstreamConn
	toUp    *websocket.Relay
	toDown  *websocket.Relay
	done    chan struct{}
	closing sync.Once
}

func (tu *tunnel) closeBoth() {
	tu.closing.Do(func() { tu.client.Close(); tu.up.close() })
}

// goAwayGrace is how long a WebSocket client has to answer our Close.
const goAwayGrace = 2 * time.Second

// goAway ends the tunnel with Close frames both ways (the client then
// reconnects, to a live release), or by closing both connections when the
// grace runs out.
func (tu *tunnel) goAway() {
	tu.toDown.GoAway(websocket.CloseGoingAway, "the release behind this connection was replaced; reconnect")
	tu.toUp.GoAway(websocket.CloseGoingAway, "drain deadline")
	select {
	case <-tu.done:
		return
	case <-time.After(goAwayGrace):
	}
	tu.closeBoth()
}

// pipe relays both ways until one side ends, then closes both. Bytes
// already buffered on either side go first (the relays read from them).
func (tu *tunnel) pipe() {
	defer close(tu.done)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		tu.toUp.Run()
		// The client left, or the instance will not take its frames: end the
		// instance's side; the other direction then says goodbye to the client.
		tu.up.close()
	}()
	go func() {
		defer wg.Done()
		defer tu.closeBoth()
		tu.toDown.Run()
		// The instance went away (a crash) without closing: tell the client
		// in the protocol, so that it reconnects — to a live instance.
		tu.toDown.GoAway(websocket.CloseServiceRestart, "the instance behind this connection went away; reconnect")
	}()
	wg.Wait()
}
