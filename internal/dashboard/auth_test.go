package dashboard

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAPIAuth: the API takes the Bearer token or the session cookie; a
// POST with the cookie needs the page's CSRF token and the same origin.
func TestAPIAuth(t *testing.T) {
	api := newFakeAPI()
	s := newTestServer(t, api)
	cookie := s.login(t, "alice")
	csrf := s.csrf(t, cookie)
	body := `{"app": "web", "on": true, "banner": "Upgrading", "actor": "alice (dashboard)"}`
	ctJSON := "Content-Type: application/json"
	for _, c := range []struct {
		name    string
		method  string
		path    string
		headers []string
		want    int
	}{
		{"no credential", "GET", "/api/status", nil, 401},
		{"no credential, POST", "POST", "/api/readonly", []string{ctJSON}, 401},
		{"Bearer", "GET", "/api/status", []string{"Authorization: Bearer " + testToken}, 200},
		{"Bearer, any case", "GET", "/api/status", []string{"Authorization: bearer " + testToken}, 200},
		{"wrong Bearer", "GET", "/api/status", []string{"Authorization: Bearer nope"}, 401},
		{"wrong Bearer is not rescued by the cookie", "GET", "/api/status", []string{"Authorization: Bearer nope", cookie}, 401},
		{"token as a cookie value", "GET", "/api/status", []string{"Cookie: " + CookieName + "=" + testToken}, 401},
		{"Bearer POST needs no CSRF token", "POST", "/api/readonly", []string{ctJSON, "Authorization: Bearer " + testToken}, 200},
		{"cookie GET", "GET", "/api/status", []string{cookie}, 200},
		{"cookie POST without the CSRF header", "POST", "/api/readonly", []string{ctJSON, cookie, "Sec-Fetch-Site: same-origin"}, 403},
		{"cookie POST with a wrong CSRF header", "POST", "/api/readonly", []string{ctJSON, cookie, CSRFHeader + ": " + csrf + "x"}, 403},
		{"cookie POST from another site", "POST", "/api/readonly", []string{ctJSON, cookie, CSRFHeader + ": " + csrf, "Sec-Fetch-Site: cross-site"}, 403},
		{"cookie POST from another port of the host", "POST", "/api/readonly", []string{ctJSON, cookie, CSRFHeader + ": " + csrf, "Sec-Fetch-Site: same-site"}, 403},
		{"cookie POST with another Origin", "POST", "/api/readonly", []string{ctJSON, cookie, CSRFHeader + ": " + csrf, "Origin: http://127.0.0.1:1"}, 403},
		{"cookie POST from the page", "POST", "/api/readonly", []string{ctJSON, cookie, CSRFHeader + ": " + csrf, "Sec-Fetch-Site: same-origin", "Origin: " + s.URL}, 200},
	} {
		resp, got := s.do(t, c.method, c.path, body, c.headers...)
		if resp.StatusCode != c.want {
			t.Errorf("%s: %s %s answered %s, want %d: %s", c.name, c.method, c.path, resp.Status, c.want, got)
			continue
		}
		if c.want >= 400 && (resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(got, `"error"`)) {
			t.Errorf("%s: the refusal should be a JSON error: %s %q", c.name, resp.Header.Get("Content-Type"), got)
		}
	}
	if len(api.modes) != 2 || api.modes[0] != "readonly web on" || api.modes[1] != "readonly web on" {
		t.Errorf("exactly the two allowed POSTs should have switched read-only, got %q", api.modes)
	}
}

// TestSessionCookie: the cookie is HttpOnly and SameSite=Strict, holds no
// trace of the token, and stops working at logout, at expiry, and with
// another token.
func TestSessionCookie(t *testing.T) {
	s := newTestServer(t, newFakeAPI())
	form := "token=" + testToken + "&name=alice"
	resp, _ := s.do(t, "POST", "/login", form, "Content-Type: application/x-www-form-urlencoded")
	var c *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == CookieName {
			c = k
		}
	}
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge <= 0 {
		t.Fatalf("session cookie: %+v", c)
	}
	if strings.Contains(c.Value, testToken) || strings.Contains(c.Value, b64([]byte(testToken))) {
		t.Fatalf("the cookie holds the token: %s", c.Value)
	}
	cookie := "Cookie: " + CookieName + "=" + c.Value

	// Another server with another token does not take it.
	other := NewAuth("another-token", time.Hour)
	req, _ := http.NewRequest("GET", "/", nil)
	req.Header.Set("Cookie", CookieName+"="+c.Value)
	if _, err := other.identify(req); err == nil {
		t.Error("a session of one token was accepted by a server with another")
	}
	// Expired: the same server, a day later.
	later := NewAuth(testToken, time.Hour)
	later.now = func() time.Time { return time.Now().Add(24 * time.Hour) }
	if _, err := later.identify(req); err != errExpired {
		t.Errorf("a day-old session: %v, want %v", err, errExpired)
	}

	// Logout: with the page's CSRF token, it revokes the session.
	csrf := s.csrf(t, cookie)
	if resp, _ := s.do(t, "POST", "/logout", "", cookie, "Content-Type: application/x-www-form-urlencoded"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout without the CSRF token: %s, want 403", resp.Status)
	}
	resp, _ = s.do(t, "POST", "/logout", "csrf="+csrf, cookie, "Content-Type: application/x-www-form-urlencoded")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("logout: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	if cs := resp.Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 {
		t.Errorf("logout should delete the cookie: %+v", cs)
	}
	if resp, _ := s.do(t, "GET", "/api/status", "", cookie); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a logged-out session still reads the API: %s", resp.Status)
	}
	if resp, _ := s.do(t, "GET", "/", "", cookie); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("a logged-out session still sees the dashboard: %s", resp.Status)
	}
}

func TestSessionEncoding(t *testing.T) {
	k := deriveKeys(testToken)
	now := time.Now()
	s, err := newSession("  alice\x00 \n smith "+strings.Repeat("é", 60), now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Name) > maxNameLen || !strings.HasPrefix(s.Name, "alice smith é") {
		t.Errorf("name not cleaned: %q", s.Name)
	}
	v := k.encode(s)
	got, err := k.decode(v, now)
	if err != nil || got.Name != s.Name || got.Nonce != s.Nonce || !got.Expires.Equal(s.Expires) {
		t.Fatalf("decode(encode(s)) = %+v, %v; want %+v", got, err, s)
	}
	payload, mac, _ := strings.Cut(v, ".")
	forged := k.encode(session{Name: "mallory", Expires: s.Expires, Nonce: s.Nonce})
	fpayload, _, _ := strings.Cut(forged, ".")
	for name, bad := range map[string]string{
		"another name under the MAC": fpayload + "." + mac,
		"no MAC":                     payload,
		"not base64":                 "!!!." + mac,
		"empty":                      "",
	} {
		if _, err := k.decode(bad, now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if k.csrfToken(s) == k.csrfToken(session{Nonce: [nonceLen]byte{1}}) {
		t.Error("two sessions share a CSRF token")
	}
}

// TestLoginFormTooLarge: a login form over maxForm gets 413, and no session.
func TestLoginFormTooLarge(t *testing.T) {
	s := newTestServer(t, newFakeAPI())
	body := "token=" + testToken + "&name=" + strings.Repeat("a", maxForm)
	resp, page := s.do(t, "POST", "/login", body, "Content-Type: application/x-www-form-urlencoded", "Origin: "+s.URL)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || len(resp.Cookies()) != 0 || !strings.Contains(page, "too large") {
		t.Errorf("a login form of %d bytes: %s, %d cookies", len(body), resp.Status, len(resp.Cookies()))
	}
}
