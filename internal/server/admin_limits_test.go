package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/deploy"
)

// shortTimeouts stand for the admin listener's, in test time.
var shortTimeouts = adminTimeouts{ReadHeader: 300 * time.Millisecond, Read: 300 * time.Millisecond, Write: 300 * time.Millisecond, Idle: 300 * time.Millisecond}

// dialAdmin opens a raw connection to the admin listener.
func dialAdmin(t *testing.T, base string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reads c until the server closes it, failing the test if it
// is still open after d.
func closedWithin(t *testing.T, c net.Conn, d time.Duration, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("%s: the connection is still held after %s", what, d)
	}
}

// TestAdminSlowLoginBody: a login form whose body stops coming is dropped
// after the read timeout.
func TestAdminSlowLoginBody(t *testing.T) {
	_, base := startAdminWith(t, fakeAPI{}, shortTimeouts)
	c := dialAdmin(t, base)
	fmt.Fprintf(c, "POST /login HTTP/1.1\r\nHost: admin\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ntoken=012")
	closedWithin(t, c, 3*time.Second, "a login body that stopped coming")
}

// TestAdminIdleKeepAlive: a keep-alive connection left idle is closed
// after the idle timeout.
func TestAdminIdleKeepAlive(t *testing.T) {
	_, base := startAdminWith(t, fakeAPI{}, shortTimeouts)
	c := dialAdmin(t, base)
	fmt.Fprintf(c, "GET /login HTTP/1.1\r\nHost: admin\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("GET /login: %s, close %v", resp.Status, resp.Close)
	}
	closedWithin(t, c, 3*time.Second, "an idle keep-alive connection")
}

// TestAdminLongAnswers: the write timeout bounds each write, not the
// answer: followed logs, the dashboard's event stream and a deploy
// answered whole when it is done all go on past it.
func TestAdminLongAnswers(t *testing.T) {
	const lines = 24 // one each 50ms: 1.2s, four write timeouts
	api := fakeAPI{
		logs: func(ctx context.Context, w io.Writer) error {
			for i := range lines {
				if _, err := fmt.Fprintf(w, "web-v1-0 | line %d\n", i); err != nil {
					return err
				}
				time.Sleep(50 * time.Millisecond)
			}
			return nil
		},
		deploy: func(ctx context.Context) (*deploy.Deploy, error) {
			time.Sleep(4 * shortTimeouts.Write)
			return &deploy.Deploy{ID: "web-1", App: "web", State: deploy.Done}, nil
		},
	}
	_, base := startAdminWith(t, api, shortTimeouts)
	auth := "Bearer " + adminToken

	req, _ := http.NewRequest("GET", base+"/api/logs?app=web&follow=1", nil)
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := strings.Count(string(body), "\n"); got != lines || err != nil {
		t.Errorf("followed logs: %d lines of %d (%v)", got, lines, err)
	}

	req, _ = http.NewRequest("POST", base+"/api/deploy", strings.NewReader(`{"app": "web", "targets": ["127.0.0.1:1"]}`))
	req.Header.Set("Authorization", auth)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"web-1"`) || err != nil {
		t.Errorf("a deploy answered when done: %s %s (%v)", resp.Status, body, err)
	}

	req, _ = http.NewRequest("GET", base+"/events", nil)
	req.Header.Set("Authorization", auth)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	start := time.Now()
	for time.Since(start) < 5*shortTimeouts.Write {
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatalf("the event stream ended after %s: %v", time.Since(start), err)
		}
	}
}

// TestAdminDropsNonReader: a client that stops reading a long answer is
// dropped after the write timeout, and the handler gets on.
func TestAdminDropsNonReader(t *testing.T) {
	ended := make(chan error, 1)
	api := fakeAPI{logs: func(ctx context.Context, w io.Writer) error {
		chunk := []byte(strings.Repeat("web-v1-0 | a long line of log\n", 2048))
		for {
			if _, err := w.Write(chunk); err != nil {
				ended <- err
				return err
			}
		}
	}}
	_, base := startAdminWith(t, api, shortTimeouts)
	c := dialAdmin(t, base)
	fmt.Fprintf(c, "GET /api/logs?app=web&follow=1 HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer %s\r\n\r\n", adminToken)
	select {
	case err := <-ended:
		t.Logf("the handler's write failed: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("a client that reads nothing still holds the answer after 10s")
	}
}

// TestLoadToken: the first start writes a token of 48 characters, mode
// 0600, which the next start accepts; a token file others may open, an
// empty one or a short one stop the start with an error naming the file.
func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "admin.token")
	tok, err := loadToken(path)
	if err != nil || len(tok) != 48 {
		t.Fatalf("a new token: %q, %v", tok, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the new token file: %v, %v", fi.Mode(), err)
	}
	if again, err := loadToken(path); err != nil || again != tok {
		t.Fatalf("the token at the next start: %q, %v", again, err)
	}

	long := strings.Repeat("k", minTokenLen)
	for _, c := range []struct {
		name    string
		content string
		mode    os.FileMode
		want    string // in the error; "" for none
	}{
		{"owner only", long + "\n", 0o600, ""},
		{"read-only for the owner", long, 0o400, ""},
		{"readable by all", long, 0o644, "chmod 600"},
		{"readable by the group", long, 0o640, "mode 0640"},
		{"writable by others", long, 0o602, "chmod 600"},
		{"empty", "\n", 0o600, "is empty"},
		{"short", long[1:], 0o600, fmt.Sprintf("fewer than %d", minTokenLen)},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
		if err := os.WriteFile(p, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, c.mode); err != nil {
			t.Fatal(err)
		}
		_, err := loadToken(p)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p)):
			t.Errorf("%s: error %v, want one naming %s and saying %q", c.name, err, p, c.want)
		}
	}
}
