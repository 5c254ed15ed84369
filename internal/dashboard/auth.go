package dashboard

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"github.com/handoff-dev/handoff/internal/gateway"
	"net/http"
	"strings"
	"sync"
	"time"
)

// CookieName is the dashboard's session cookie.
const CookieName = gateway.AdminCookie

// CSRFHeader carries a session's CSRF token on every request with a method
// that changes state (POST) made with the session cookie.
const CSRFHeader = "X-Handoff-CSRF"

// DefaultSessionTTL is how long a dashboard login lasts.
const DefaultSessionTTL = 12 * time.Hour

var (
	errNoCredential = errors.New("no credential")
	errBadToken     = errors.New("wrong token")
	errRevoked      = errors.New("session logged out")
)

// Auth decides who may use the admin listener: a request with
// Authorization: Bearer <token>, or one with a dashboard session cookie
// (see session). A cookie-authenticated request that changes state must
// also pass a cross-origin check and carry the session's CSRF token; a
// Bearer request need not, as browsers never attach that header on their
// own. Auth is safe for concurrent use.
type Auth struct {
	tokenSum [sha256.Size]byte // compared, not the token, so lengths leak nothing
	keys     sessionKeys
	ttl      time.Duration
	now      func() time.Time
	cop      *http.CrossOriginProtection

	limit *loginLimiter

	mu      sync.Mutex
	revoked map[[nonceLen]byte]time.Time // logged-out sessions, until they expire
}

// NewAuth returns the guard for token; ttl is how long a dashboard login
// lasts (DefaultSessionTTL when 0).
func NewAuth(token string, ttl time.Duration) *Auth {
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	return &Auth{tokenSum: sha256.Sum256([]byte(token)), keys: deriveKeys(token), ttl: ttl, now: time.Now,
		cop: http.NewCrossOriginProtection(), limit: newLoginLimiter(), revoked: map[[nonceLen]byte]time.Time{}}
}

// identify returns the request's session, or nil with a nil error for a
// request with the right Bearer token. An Authorization header, when
// present, is the only credential looked at: a wrong token is not rescued
// by a cookie.
func (a *Auth) identify(r *http.Request) (*session, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := cutPrefixFold(h, "Bearer ")
		if !ok {
			return nil, errBadToken
		}
		return nil, a.checkToken(r, tok)
	}
	c, err := r.Cookie(CookieName)
	if err != nil {
		return nil, errNoCredential
	}
	s, err := a.keys.decode(c.Value, a.now())
	if err != nil {
		return nil, err
	}
	if a.isRevoked(s) {
		return nil, errRevoked
	}
	return &s, nil
}

// checkToken checks a token a client presents, unless the client must
// wait (a *rateLimitedError) for having got it wrong too often; a wrong
// one counts against the client.
func (a *Auth) checkToken(r *http.Request, token string) error {
	client, now := clientOf(r), a.now()
	if wait := a.limit.wait(client, now); wait > 0 {
		return &rateLimitedError{Wait: wait}
	}
	if !a.tokenMatches(token) {
		a.limit.failed(client, now)
		return errBadToken
	}
	return nil
}

// tokenMatches compares in constant time.
func (a *Auth) tokenMatches(token string) bool {
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], a.tokenSum[:]) == 1
}

// Require lets through only requests that identify (see Auth); the others
// get 401, a cookie-authenticated one that fails the CSRF check 403, and
// a token from a client that got it wrong too often 429 with Retry-After
// (see loginLimiter), each with a JSON error as the control API answers.
func (a *Auth) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := a.identify(r)
		if limited, ok := errors.AsType[*rateLimitedError](err); ok {
			setRetryAfter(w, limited)
			jsonError(w, http.StatusTooManyRequests, limited.Error())
			return
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="handoff"`)
			jsonError(w, http.StatusUnauthorized, "this needs Authorization: Bearer <token>, with the token from admin.token_file, or a dashboard session (log in at /login)")
			return
		}
		if s != nil {
			if err := a.checkCSRF(r, s, r.Header.Get(CSRFHeader)); err != nil {
				jsonError(w, http.StatusForbidden, err.Error())
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// checkCSRF refuses a state-changing request made with the session cookie
// unless it comes from the dashboard's own origin (Sec-Fetch-Site, else
// Origin against Host: SameSite=Strict alone would let another port of the
// same host through, since a site ignores ports) and carries the session's
// CSRF token. Safe methods pass: nothing here changes state on a GET.
func (a *Auth) checkCSRF(r *http.Request, s *session, token string) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if err := a.cop.Check(r); err != nil {
		return fmt.Errorf("refused a cross-origin request made with the dashboard's cookie: %w", err)
	}
	if !hmac.Equal([]byte(token), []byte(a.keys.csrfToken(*s))) {
		return fmt.Errorf("refused a request made with the dashboard's cookie: it needs the page's %s header", CSRFHeader)
	}
	return nil
}

// login checks token (see checkToken) and returns the cookie of a new
// session for name.
func (a *Auth) login(r *http.Request, token, name string) (*http.Cookie, error) {
	if err := a.checkToken(r, token); err != nil {
		return nil, err
	}
	s, err := newSession(name, a.now(), a.ttl)
	if err != nil {
		return nil, err
	}
	return &http.Cookie{Name: CookieName, Value: a.keys.encode(s), Path: "/", Expires: s.Expires,
		MaxAge: int(s.Expires.Sub(a.now()).Seconds()), HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: overTLS(r)}, nil
}

// logout revokes s in this process until it expires, and returns the
// cookie that deletes it from the browser. (A copy of the cookie kept
// elsewhere works again on another process until it expires; a new admin
// token ends every session.)
func (a *Auth) logout(r *http.Request, s *session) *http.Cookie {
	if s != nil {
		a.mu.Lock()
		now := a.now()
		for n, exp := range a.revoked {
			if !now.Before(exp) {
				delete(a.revoked, n)
			}
		}
		a.revoked[s.Nonce] = s.Expires
		a.mu.Unlock()
	}
	return &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: overTLS(r)}
}

// overTLS reports whether the browser reached us over TLS, directly or
// through a TLS proxy (X-Forwarded-Proto), so the cookie is marked Secure.
// A forged header only keeps the forger's own browser from storing it.
func overTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (a *Auth) isRevoked(s session) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.revoked[s.Nonce]
	return ok
}

// cutPrefixFold is strings.CutPrefix with the prefix matched in any case,
// as RFC 9110 makes auth schemes case-insensitive.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}
