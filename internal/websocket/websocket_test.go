package websocket

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// serve runs handle on every upgraded server-side connection and returns the
// server's address; handle's error, if any, is delivered on the channel.
func serve(t *testing.T, handle func(*Conn) error) (string, <-chan error) {
	t.Helper()
	errs := make(chan error, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Release", "v1")
		c, err := Upgrade(w, r)
		if err != nil {
			errs <- err
			return
		}
		errs <- handle(c)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), errs
}

// echo answers every message with itself until the peer closes.
func echo(c *Conn) error {
	defer c.Close()
	for {
		op, msg, err := c.ReadMessage()
		if err != nil {
			return err
		}
		if err := c.WriteMessage(op, msg); err != nil {
			return err
		}
	}
}

func dial(t *testing.T, addr string) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := Dial(ctx, addr, "", "/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if got := resp.Header.Get("X-Release"); got != "v1" {
		t.Errorf("101 response X-Release = %q, want v1", got)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func serverErr(t *testing.T, errs <-chan error) error {
	t.Helper()
	select {
	case err := <-errs:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("server handler did not finish")
		return nil
	}
}

func TestAcceptKeyMatchesRFCExample(t *testing.T) {
	if got, want := AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; got != want {
		t.Fatalf("AcceptKey = %q, want %q", got, want)
	}
}

func TestHeaderRoundTripsEveryLengthEncoding(t *testing.T) {
	for _, n := range []int{0, 125, 126, 0xffff, 0x10000} {
		key := [4]byte{1, 2, 3, 4}
		b := appendHeader(nil, true, OpBinary, n, &key)
		h, err := readHeader(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if !h.fin || h.op != OpBinary || !h.masked || h.mask != key || h.length != int64(n) {
			t.Errorf("n=%d: got %+v", n, h)
		}
	}
}

func TestEchoesMessagesOfEverySize(t *testing.T) {
	addr, errs := serve(t, echo)
	c := dial(t, addr)
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 300000} {
		for _, op := range []Opcode{OpText, OpBinary} {
			msg := bytes.Repeat([]byte("a"), n)
			if err := c.WriteMessage(op, msg); err != nil {
				t.Fatalf("write %d: %v", n, err)
			}
			gotOp, got, err := c.ReadMessage()
			if err != nil {
				t.Fatalf("read %d: %v", n, err)
			}
			if gotOp != op || !bytes.Equal(got, msg) {
				t.Fatalf("echo of %v %d bytes: got %v %d bytes", op, n, gotOp, len(got))
			}
		}
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	var ce *CloseError
	if err := serverErr(t, errs); !errors.As(err, &ce) || ce.Code != CloseNormal {
		t.Fatalf("server read error = %v, want close 1000", err)
	}
}

func TestReassemblesFragmentsAroundAPing(t *testing.T) {
	addr, _ := serve(t, echo)
	c := dial(t, addr)
	c.writeMu.Lock()
	for _, f := range []struct {
		fin  bool
		op   Opcode
		data string
	}{{false, OpText, "hel"}, {true, OpPing, "p"}, {false, OpContinuation, "lo "}, {true, OpContinuation, "world"}} {
		if err := c.writeFrameLocked(f.fin, f.op, []byte(f.data)); err != nil {
			t.Fatal(err)
		}
	}
	c.writeMu.Unlock()
	op, msg, err := c.ReadMessage()
	if err != nil || op != OpText || string(msg) != "hello world" {
		t.Fatalf("got %v %q %v, want text \"hello world\"", op, msg, err)
	}
}

// rawClient performs the handshake by hand and returns the TCP connection,
// so that tests can send frames a well-behaved client would not.
func rawClient(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := nc.Write(upgradeRequest(addr, "/ws", "dGhlIHNhbXBsZSBub25jZQ==", nil)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("Sec-WebSocket-Accept = %q", got)
	}
	return nc, br
}

// readFrame reads one whole frame as a client would.
func readFrame(t *testing.T, br *bufio.Reader) (header, []byte) {
	t.Helper()
	h, err := readHeader(br)
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	if h.masked {
		t.Fatal("server sent a masked frame")
	}
	p := make([]byte, h.length)
	if _, err := io.ReadFull(br, p); err != nil {
		t.Fatal(err)
	}
	return h, p
}

func writeRaw(t *testing.T, nc net.Conn, op Opcode, payload []byte, masked bool) {
	t.Helper()
	var key *[4]byte
	if masked {
		key = &[4]byte{9, 8, 7, 6}
	}
	b := appendHeader(nil, true, op, len(payload), key)
	p := append([]byte(nil), payload...)
	if masked {
		maskBytes(*key, 0, p)
	}
	if _, err := nc.Write(append(b, p...)); err != nil {
		t.Fatal(err)
	}
}

func closeCode(t *testing.T, h header, p []byte) int {
	t.Helper()
	if h.op != OpClose || len(p) < 2 {
		t.Fatalf("got %v frame %q, want a close with a code", h.op, p)
	}
	return int(binary.BigEndian.Uint16(p))
}

func TestPingIsAnsweredWithPong(t *testing.T) {
	addr, _ := serve(t, echo)
	nc, br := rawClient(t, addr)
	writeRaw(t, nc, OpPing, []byte("are you there"), true)
	h, p := readFrame(t, br)
	if h.op != OpPong || string(p) != "are you there" {
		t.Fatalf("got %v %q, want pong with the ping's payload", h.op, p)
	}
}

func TestUnmaskedClientFrameFailsTheConnection(t *testing.T) {
	addr, errs := serve(t, echo)
	nc, br := rawClient(t, addr)
	writeRaw(t, nc, OpText, []byte("hi"), false)
	h, p := readFrame(t, br)
	if code := closeCode(t, h, p); code != CloseProtocolError {
		t.Fatalf("close code %d, want 1002", code)
	}
	var pe *ProtocolError
	if err := serverErr(t, errs); !errors.As(err, &pe) {
		t.Fatalf("server error = %v, want a ProtocolError", err)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("connection still open after a protocol error")
	}
}

func TestInvalidUTF8TextFailsWith1007(t *testing.T) {
	addr, _ := serve(t, echo)
	nc, br := rawClient(t, addr)
	writeRaw(t, nc, OpText, []byte{0xff, 0xfe}, true)
	h, p := readFrame(t, br)
	if code := closeCode(t, h, p); code != CloseInvalidPayload {
		t.Fatalf("close code %d, want 1007", code)
	}
}

func TestMessageOverTheLimitIsRefusedWith1009(t *testing.T) {
	addr, errs := serve(t, func(c *Conn) error {
		c.SetMaxMessageSize(1000)
		return echo(c)
	})
	c := dial(t, addr)
	if err := c.WriteMessage(OpBinary, make([]byte, 2000)); err != nil {
		t.Fatal(err)
	}
	var ce *CloseError
	if _, _, err := c.ReadMessage(); !errors.As(err, &ce) || ce.Code != CloseMessageTooBig {
		t.Fatalf("client read = %v, want close 1009", err)
	}
	if err := serverErr(t, errs); !errors.Is(err, ErrMessageTooBig) {
		t.Fatalf("server error = %v, want ErrMessageTooBig", err)
	}
}

func TestServerCloseReachesABlockedReader(t *testing.T) {
	closed := make(chan error, 1)
	addr, _ := serve(t, func(c *Conn) error {
		if err := c.WriteMessage(OpText, []byte("bye soon")); err != nil {
			return err
		}
		closed <- c.CloseWithCode(CloseGoingAway, "shutting down")
		return nil
	})
	c := dial(t, addr)
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "bye soon" {
		t.Fatalf("read = %q, %v", msg, err)
	}
	var ce *CloseError
	if _, _, err := c.ReadMessage(); !errors.As(err, &ce) || ce.Code != CloseGoingAway || ce.Reason != "shutting down" {
		t.Fatalf("read = %v, want close 1001 \"shutting down\"", err)
	}
	if _, _, err := c.ReadMessage(); !errors.As(err, &ce) {
		t.Fatalf("second read after close = %v, want the same CloseError", err)
	}
	if err := c.WriteMessage(OpText, []byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close = %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("client close: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("server close: %v", err)
	}
}

func TestUpgradeRefusesAPlainRequest(t *testing.T) {
	addr, errs := serve(t, echo)
	resp, err := http.Get("http://" + addr + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
	if err := serverErr(t, errs); !errors.Is(err, ErrBadHandshake) {
		t.Fatalf("Upgrade error = %v, want ErrBadHandshake", err)
	}
}

func TestDialReportsARefusalWithItsBody(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, resp, err := Dial(context.Background(), srv.Listener.Addr().String(), "example.test", "/nope", nil)
	if !errors.Is(err, ErrBadHandshake) {
		t.Fatalf("Dial error = %v, want ErrBadHandshake", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "not found") {
		t.Fatalf("refusal = %d %q", resp.StatusCode, body)
	}
}

func TestDialGivesUpWhenContextEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		// Accept and say nothing: the handshake must be cut by the context.
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := Dial(ctx, ln.Addr().String(), "", "/", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial error = %v, want DeadlineExceeded", err)
	}
}
