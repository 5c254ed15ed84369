package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"

	"github.com/handoff-dev/handoff/internal/deploy"
)

// Client talks to a running handoff server.
type Client struct {
	http  *http.Client
	base  string
	token string
	where string // for error messages
}

// Dial returns a client for the server listening on a unix socket.
func Dial(socket string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{http: &http.Client{Transport: tr}, base: "http://handoff", where: socket}
}

// NewHTTP returns a client for the admin listener at base (http://host:port).
func NewHTTP(base, token string) *Client {
	return &Client{http: &http.Client{}, base: base, token: token, where: base}
}

// APIError is an error answer from the server.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return e.Message }

// Status fetches the status of every app, or of one.
func (c *Client) Status(ctx context.Context, app string) (*Status, error) {
	var st Status
	return &st, c.do(ctx, http.MethodGet, "/api/status?app="+url.QueryEscape(app), nil, &st)
}

// SetMode switches mode (readonly, maintenance, pause or resume).
func (c *Client) SetMode(ctx context.Context, mode string, req ModeRequest) (*Status, error) {
	var st Status
	return &st, c.do(ctx, http.MethodPost, "/api/"+mode, req, &st)
}

// Events fetches up to limit events after the given ID.
func (c *Client) Events(ctx context.Context, after int64, limit int) (*Events, error) {
	var ev Events
	return &ev, c.do(ctx, http.MethodGet, fmt.Sprintf("/api/events?after=%d&limit=%d", after, limit), nil, &ev)
}

// Upgrade asks the server to hand over to the handoff binary on disk.
func (c *Client) Upgrade(ctx context.Context) (*Upgrade, error) {
	var up Upgrade
	return &up, c.do(ctx, http.MethodPost, "/api/upgrade", struct{}{}, &up)
}

// Releases lists the releases of every app, or of one.
func (c *Client) Releases(ctx context.Context, app string) (*Releases, error) {
	var rel Releases
	return &rel, c.do(ctx, http.MethodGet, "/api/releases?app="+url.QueryEscape(app), nil, &rel)
}

// Logs copies an app's instance logs to w; with follow, until ctx ends.
func (c *Client) Logs(ctx context.Context, w io.Writer, app string, lines int, follow bool) error {
	q := url.Values{"app": {app}, "lines": {fmt.Sprint(lines)}}
	if follow {
		q.Set("follow", "1")
	}
	req, err := c.request(ctx, http.MethodGet, "/api/logs?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil && ctx.Err() == nil {
		return fmt.Errorf("read logs from %s: %w", c.where, err)
	}
	return nil
}

// Deploy runs a deploy and reports its progress as it happens.
func (c *Client) Deploy(ctx context.Context, req DeployRequest, progress func(deploy.Progress)) (*deploy.Deploy, error) {
	return c.stream(ctx, "/api/deploy", req, progress)
}

// Rollback rolls an app back and reports its progress as it happens.
func (c *Client) Rollback(ctx context.Context, req RollbackRequest, progress func(deploy.Progress)) (*deploy.Deploy, error) {
	return c.stream(ctx, "/api/rollback", req, progress)
}

func (c *Client) request(ctx context.Context, method, path string, body any) (*http.Request, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("no handoff server at %s: is 'handoff serve' running? (give --socket or --config)", c.where)
		}
		return nil, fmt.Errorf("reach handoff server at %s: %w", c.where, err)
	}
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/x-ndjson" {
		defer resp.Body.Close()
		var e Line
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("server answered %s", resp.Status)
		}
		return nil, &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	return resp, nil
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	req, err := c.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("read answer from %s: %w", c.where, err)
	}
	return nil
}

func (c *Client) stream(ctx context.Context, path string, body any, progress func(deploy.Progress)) (*deploy.Deploy, error) {
	req, err := c.request(ctx, http.MethodPost, path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("read answer from %s: %w", c.where, err)
		}
		switch {
		case l.Progress != nil:
			if progress != nil {
				progress(*l.Progress)
			}
		case l.Interrupted && l.Deploy != nil:
			return l.Deploy, &InterruptedError{Deploy: l.Deploy, Msg: l.Error}
		case l.Error != "":
			return l.Deploy, errors.New(l.Error)
		default:
			return l.Deploy, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read answer from %s: %w", c.where, err)
	}
	return nil, fmt.Errorf("the server at %s closed the connection before the deploy ended; see 'handoff status'", c.where)
}
