package websocket

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// handshakeError is a refused opening handshake and the status to answer.
type handshakeError struct {
	status int
	msg    string
}

func (e *handshakeError) Error() string { return e.msg }
func (e *handshakeError) Unwrap() error { return ErrBadHandshake }

// Upgrade answers a WebSocket opening handshake and takes over the
// connection. Headers already set on w (X-Release, say) are sent with the
// 101 response. A request that is not a valid handshake gets a 4xx answer
// and an error wrapping ErrBadHandshake; w must not be used after Upgrade.
//
// Deadlines the http.Server set on the connection are cleared: the
// connection now lives as long as the WebSocket does.
func Upgrade(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	key, herr := checkUpgrade(r)
	if herr != nil {
		if herr.status == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		http.Error(w, herr.msg, herr.status)
		return nil, fmt.Errorf("upgrade websocket: %w", herr)
	}
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "websocket: cannot take over the connection", http.StatusInternalServerError)
		return nil, fmt.Errorf("hijack connection: %w", err)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("clear deadline: %w", err)
	}
	if _, err := nc.Write(switchingProtocols(w.Header(), key)); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("write handshake: %w", err)
	}
	// brw.Reader may already hold the client's first frames.
	return newConn(nc, brw.Reader, false), nil
}

// checkUpgrade validates the handshake (RFC 6455 §4.2.1) and returns the key.
func checkUpgrade(r *http.Request) (string, *handshakeError) {
	switch {
	case r.Method != http.MethodGet:
		return "", &handshakeError{http.StatusMethodNotAllowed, "websocket: handshake method is not GET"}
	case !headerHasToken(r.Header, "Connection", "upgrade"):
		return "", &handshakeError{http.StatusBadRequest, "websocket: Connection header lacks 'upgrade'"}
	case !headerHasToken(r.Header, "Upgrade", "websocket"):
		return "", &handshakeError{http.StatusBadRequest, "websocket: Upgrade header lacks 'websocket'"}
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return "", &handshakeError{http.StatusUpgradeRequired, "websocket: Sec-WebSocket-Version is not 13"}
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		return "", &handshakeError{http.StatusBadRequest, "websocket: Sec-WebSocket-Key is not 16 bytes in base64"}
	}
	return key, nil
}

// switchingProtocols renders the 101 response with extra headers.
func switchingProtocols(extra http.Header, key string) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ")
	b.WriteString(AcceptKey(key))
	b.WriteString("\r\n")
	for k, vs := range extra {
		if isHandshakeHeader(k) {
			continue
		}
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// isHandshakeHeader reports whether the handshake itself owns header k,
// which extra headers must then not repeat.
func isHandshakeHeader(k string) bool {
	switch http.CanonicalHeaderKey(k) {
	case "Upgrade", "Connection", "Sec-Websocket-Accept", "Content-Length", "Transfer-Encoding":
		return true
	}
	return false
}

// headerHasToken reports whether a comma-separated header contains token,
// case-insensitively ("keep-alive, Upgrade" has "upgrade").
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
