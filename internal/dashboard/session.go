package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// session is one dashboard login: the name its user gave (for the event
// log's "who") and when it ends. It travels in the cookie, signed with a key
// derived from the admin token: the server keeps no session table, so a
// session survives a restart and `handoff upgrade`, and a new token ends
// every session at once. The cookie never holds the token itself.
type session struct {
	Name    string
	Expires time.Time
	Nonce   [nonceLen]byte
}

const (
	sessionVersion = 1
	nonceLen       = 16
	// maxNameLen bounds the name a user gives at login (bytes).
	maxNameLen = 64
	// payloadHead is version, expiry (unix seconds) and nonce.
	payloadHead = 1 + 8 + nonceLen
)

var (
	errMalformed = errors.New("malformed session cookie")
	errForged    = errors.New("session cookie not signed by this server's token")
	errExpired   = errors.New("session expired")
)

// sessionKeys are the keys a token gives: one signs session cookies, one
// derives each session's CSRF token. Both are HMACs of the token, so that
// neither a cookie nor a page reveals anything about the token.
type sessionKeys struct {
	sign []byte
	csrf []byte
}

func deriveKeys(token string) sessionKeys {
	derive := func(purpose string) []byte {
		m := hmac.New(sha256.New, []byte(token))
		m.Write([]byte(purpose))
		return m.Sum(nil)
	}
	return sessionKeys{sign: derive("handoff dashboard session v1"), csrf: derive("handoff dashboard csrf v1")}
}

// newSession starts a session for name that lasts ttl.
func newSession(name string, now time.Time, ttl time.Duration) (session, error) {
	s := session{Name: cleanName(name), Expires: now.Add(ttl).Truncate(time.Second)}
	if _, err := rand.Read(s.Nonce[:]); err != nil {
		return session{}, fmt.Errorf("make session nonce: %w", err)
	}
	return s, nil
}

// cleanName keeps a name short and printable: it ends up in the event log.
func cleanName(name string) string {
	name = strings.Join(strings.FieldsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f || r == ' ' }), " ")
	for len(name) > maxNameLen {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	return name
}

// encode returns the cookie value: base64url(payload) "." base64url(HMAC).
func (k sessionKeys) encode(s session) string {
	p := make([]byte, payloadHead, payloadHead+len(s.Name))
	p[0] = sessionVersion
	binary.BigEndian.PutUint64(p[1:9], uint64(s.Expires.Unix()))
	copy(p[9:], s.Nonce[:])
	p = append(p, s.Name...)
	return b64(p) + "." + b64(k.mac(p))
}

// decode checks a cookie value's signature, then its expiry at now.
func (k sessionKeys) decode(v string, now time.Time) (session, error) {
	p64, mac64, ok := strings.Cut(v, ".")
	if !ok {
		return session{}, errMalformed
	}
	p, err1 := base64.RawURLEncoding.DecodeString(p64)
	mac, err2 := base64.RawURLEncoding.DecodeString(mac64)
	if err1 != nil || err2 != nil || len(p) < payloadHead || p[0] != sessionVersion {
		return session{}, errMalformed
	}
	if !hmac.Equal(mac, k.mac(p)) {
		return session{}, errForged
	}
	s := session{Expires: time.Unix(int64(binary.BigEndian.Uint64(p[1:9])), 0), Name: string(p[payloadHead:])}
	copy(s.Nonce[:], p[9:payloadHead])
	if !now.Before(s.Expires) {
		return session{}, errExpired
	}
	return s, nil
}

// csrfToken is the session's CSRF token: the page hands it to its script,
// which sends it back in the X-Handoff-CSRF header. Another origin can read
// neither the page nor the cookie, so it cannot produce the header.
func (k sessionKeys) csrfToken(s session) string {
	m := hmac.New(sha256.New, k.csrf)
	m.Write(s.Nonce[:])
	return b64(m.Sum(nil))
}

func (k sessionKeys) mac(p []byte) []byte {
	m := hmac.New(sha256.New, k.sign)
	m.Write(p)
	return m.Sum(nil)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
