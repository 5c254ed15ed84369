package websocket

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// maxRefusalBody bounds how much of a refused handshake's body Dial keeps.
const maxRefusalBody = 64 << 10

// Dial opens a WebSocket over a plain TCP connection to addr (host:port),
// sending Host host (addr when empty), the request path and the extra
// header (a Cookie, say). ctx bounds the dial and the handshake only.
//
// The response is returned whenever one was read, also with an error: a
// refusal (not 101) wraps ErrBadHandshake, and its body, up to 64 KiB, is
// readable from the returned response.
func Dial(ctx context.Context, addr, host, path string, header http.Header) (*Conn, *http.Response, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dial websocket: %w", err)
	}
	// A cancelled ctx interrupts the handshake's reads and writes.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	c, resp, err := handshake(nc, host, path, header)
	if !stop() {
		err = ctx.Err()
	}
	if err != nil {
		_ = nc.Close()
		return nil, resp, fmt.Errorf("dial websocket: %w", err)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		_ = nc.Close()
		return nil, resp, fmt.Errorf("dial websocket: clear deadline: %w", err)
	}
	return c, resp, nil
}

// handshake runs the client's side of the opening handshake on nc.
func handshake(nc net.Conn, host, path string, header http.Header) (*Conn, *http.Response, error) {
	if host == "" {
		host = nc.RemoteAddr().String()
	}
	var raw [16]byte
	rand.Read(raw[:]) // never fails (crypto/rand, Go 1.24+)
	key := base64.StdEncoding.EncodeToString(raw[:])
	if _, err := nc.Write(upgradeRequest(host, path, key, header)); err != nil {
		return nil, nil, fmt.Errorf("write handshake: %w", err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return nil, nil, fmt.Errorf("read handshake: %w", err)
	}
	if err := checkSwitch(resp, key); err != nil {
		keepBody(resp)
		return nil, resp, err
	}
	// br may already hold the server's first frames.
	return newConn(nc, br, true), resp, nil
}

// upgradeRequest renders the opening handshake (RFC 6455 §4.1).
func upgradeRequest(host, path, key string, header http.Header) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", path, host, key)
	_ = header.Write(&b) // a bytes.Buffer does not fail
	b.WriteString("\r\n")
	return b.Bytes()
}

// checkSwitch verifies the server's 101 answer.
func checkSwitch(resp *http.Response, key string) error {
	switch {
	case resp.StatusCode != http.StatusSwitchingProtocols:
		return fmt.Errorf("%w: status %s", ErrBadHandshake, resp.Status)
	case !headerHasToken(resp.Header, "Upgrade", "websocket"):
		return fmt.Errorf("%w: Upgrade header lacks 'websocket'", ErrBadHandshake)
	case !headerHasToken(resp.Header, "Connection", "upgrade"):
		return fmt.Errorf("%w: Connection header lacks 'upgrade'", ErrBadHandshake)
	case resp.Header.Get("Sec-WebSocket-Accept") != AcceptKey(key):
		return fmt.Errorf("%w: wrong Sec-WebSocket-Accept", ErrBadHandshake)
	}
	return nil
}

// keepBody replaces a refusal's body with an in-memory copy, so that it stays
// readable after the connection is closed.
func keepBody(resp *http.Response) {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxRefusalBody))
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
}
