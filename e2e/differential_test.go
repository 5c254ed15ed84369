package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"
)

// TestMalformedVersusNginx sends each malformed request of
// testdata/malformed (one file per case; the format is in the README
// there) to nginx and to handoff serve, each in front of its own recording
// backend, and holds handoff to nginx's standard: its answer is nginx's or
// stricter (a refusal where nginx forwarded is fine, a 2xx where nginx
// refused is not), it answers within a few seconds, and nothing reaches its
// backend that nginx would not forward. The comparison table goes to the
// test log.
func TestMalformedVersusNginx(t *testing.T) {
	nginx := findNginx()
	if nginx == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("nginx is not installed; CI must run bash .ci/install-nginx")
		}
		t.Skip("nginx is not installed: run bash .ci/install-nginx")
	}
	cases, err := loadMalformedCases("testdata/malformed")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no cases in testdata/malformed")
	}

	nginxBackend := startRawBackend(t)
	handoffBackend := startRawBackend(t)
	ngx := startNginx(t, nginx, nginxBackend.addr)
	apps := fmt.Sprintf(`  web:
    targets: [%q]
    health: { path: %s, interval: 1h }
`, handoffBackend.addr, healthPath)
	// A stalled body waits as long on both sides (nginx's
	// client_body_timeout), where handoff has the setting.
	if hasConfigKey(t, "gateway", "body_timeout", "3s") {
		apps += fmt.Sprintf("gateway:\n  body_timeout: %dms\n", nginxTimeout.Milliseconds())
	} else {
		t.Logf("handoff has no gateway.body_timeout: its default applies to stalled bodies")
	}
	n := newNode(t, apps)
	for _, p := range []struct{ name, addr string }{{"nginx", ngx}, {"handoff", n.gateway}} {
		waitUntil(t, 30*time.Second, p.name+" to forward a plain GET", func() bool {
			o := exchange(p.addr, []byte("GET /warmup HTTP/1.1\r\nHost: example.com\r\n\r\n"), 2*time.Second)
			return o.status == 200
		})
	}

	var rows []diffRow
	for _, c := range cases {
		var row diffRow
		t.Run(c.name, func(t *testing.T) {
			row = runDiffCase(t, c, ngx, nginxBackend, n.gateway, handoffBackend)
		})
		rows = append(rows, row)
	}
	t.Logf("malformed requests, nginx versus handoff (%d cases, %d failed):\n%s", len(rows), countFailed(rows), diffTable(rows))
}

// answerWithin bounds how long a proxy may take to answer one case. nginx's
// client timeouts are set to nginxTimeout, well inside it.
// HANDOFF_DIFF_ANSWER_WITHIN=70s lengthens the first, to see when handoff
// does answer a case it fails by not answering.
var answerWithin = envDuration("HANDOFF_DIFF_ANSWER_WITHIN", 6*time.Second)

const (
	nginxTimeout = 3 * time.Second
	// quietAfter: once a response is complete, a pause this long with
	// nothing more to read ends the exchange (a second response to a
	// smuggled request would come sooner).
	quietAfter = 300 * time.Millisecond
	healthPath = "/__differential_health"
	// nginxHost is nginx's server_name, which its $host falls back to.
	nginxHost = "nginx-fallback-host"
)

// hasConfigKey reports whether handoff serve knows section.key, from what
// it says of a config that sets it and is refused for another reason (no
// listen address), so that it does not start.
func hasConfigKey(t *testing.T, section, key, value string) bool {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "probe.yaml")
	text := fmt.Sprintf("listen: []\n%s:\n  %s: %s\n", section, key, value)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "serve", "--config", cfg).CombinedOutput()
	if err == nil {
		t.Fatalf("handoff serve accepted a config without a listen address:\n%s", out)
	}
	return !strings.Contains(string(out), section+"."+key)
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

func findNginx() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	return ""
}

// startNginx runs nginx in the foreground, one process, with its own config
// and files in a temp dir, proxying to backend over keep-alive connections.
// It returns nginx's address.
func startNginx(t *testing.T, exe, backend string) string {
	t.Helper()
	dir := t.TempDir()
	addr := freeAddr(t)
	timeout := fmt.Sprintf("%dms", nginxTimeout.Milliseconds())
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
  access_log %[1]s/access.log;
  client_body_temp_path %[1]s/client_body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  client_header_timeout %[4]s;
  client_body_timeout %[4]s;
  send_timeout %[4]s;
  keepalive_timeout 10s;
  upstream backend {
    server %[2]s;
    keepalive 8;
  }
  server {
    listen %[3]s;
    server_name %[5]s;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_connect_timeout 2s;
      proxy_read_timeout 5s;
    }
  }
}
`, dir, backend, addr, timeout, nginxHost)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	cmd := exec.Command(exe, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error log (tail):\n%s", tail(string(log), 8000))
		}
	})
	waitUntil(t, 20*time.Second, "nginx to listen on "+addr, func() bool {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited at start: %s\n%s", out.String(), log)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return addr
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// malformedCase is one file of testdata/malformed.
type malformedCase struct {
	name    string
	about   string // the file's first comment line
	request []byte // the bytes sent
}

func loadMalformedCases(dir string) ([]malformedCase, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var cases []malformedCase
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		about, req, err := decodeCase(string(text))
		if err != nil {
			return nil, fmt.Errorf("%s: %v", f, err)
		}
		cases = append(cases, malformedCase{name: strings.TrimSuffix(filepath.Base(f), ".txt"), about: about, request: req})
	}
	return cases, nil
}

// decodeCase reads a case file: leading lines that start with # describe
// the case; in the rest the file's own line breaks are dropped, and the
// bytes are written with escapes: \r \n \t \0 \\ \xHH, and \*{N} repeats the
// next byte (or escape) N times.
func decodeCase(text string) (about string, req []byte, err error) {
	lines := strings.SplitAfter(text, "\n")
	i := 0
	for ; i < len(lines) && strings.HasPrefix(lines[i], "#"); i++ {
		if about == "" {
			about = strings.TrimSpace(strings.TrimPrefix(lines[i], "#"))
		}
	}
	body := strings.Join(lines[i:], "")
	body = strings.NewReplacer("\r\n", "", "\n", "").Replace(body)
	var out []byte
	for pos := 0; pos < len(body); {
		repeat := 1
		if strings.HasPrefix(body[pos:], `\*{`) {
			end := strings.IndexByte(body[pos:], '}')
			if end < 0 {
				return "", nil, fmt.Errorf("unterminated \\*{ at byte %d", pos)
			}
			n, err := strconv.Atoi(body[pos+3 : pos+end])
			if err != nil || n < 0 || n > 1<<20 {
				return "", nil, fmt.Errorf("bad repeat count %q", body[pos+3:pos+end])
			}
			repeat, pos = n, pos+end+1
			if pos >= len(body) {
				return "", nil, errors.New("\\*{N} at the end of the file")
			}
		}
		b, size, err := decodeByte(body[pos:])
		if err != nil {
			return "", nil, fmt.Errorf("byte %d: %v", pos, err)
		}
		out = append(out, bytes.Repeat([]byte{b}, repeat)...)
		pos += size
	}
	return about, out, nil
}

func decodeByte(s string) (byte, int, error) {
	if s[0] != '\\' {
		return s[0], 1, nil
	}
	if len(s) < 2 {
		return 0, 0, errors.New("lone backslash at the end")
	}
	switch s[1] {
	case 'r':
		return '\r', 2, nil
	case 'n':
		return '\n', 2, nil
	case 't':
		return '\t', 2, nil
	case '0':
		return 0, 2, nil
	case '\\':
		return '\\', 2, nil
	case 'x':
		if len(s) < 4 {
			return 0, 0, errors.New("short \\x escape")
		}
		v, err := strconv.ParseUint(s[2:4], 16, 8)
		if err != nil {
			return 0, 0, fmt.Errorf("bad \\x escape %q", s[:4])
		}
		return byte(v), 4, nil
	}
	return 0, 0, fmt.Errorf("unknown escape %q", s[:2])
}

// outcome is what a client saw from a proxy.
type outcome struct {
	status    int  // the first final response's status; 0: none
	raw       bool // bytes came back that are no HTTP/1.x response (an HTTP/0.9 answer)
	responses int  // complete responses read
	closed    bool // the proxy closed the connection (after its answers, if any)
	hang      bool // nothing came back, and the connection stayed open, for answerWithin
	elapsed   time.Duration
}

func (o outcome) String() string {
	var s string
	switch {
	case o.hang:
		return fmt.Sprintf("no answer in %s", answerWithin)
	case o.raw:
		s = "raw bytes (HTTP/0.9?)"
	case o.status == 0 && o.closed:
		s = "closed, no answer"
	case o.status == 0:
		s = "incomplete answer"
	default:
		s = strconv.Itoa(o.status)
		if o.responses > 1 {
			s += fmt.Sprintf(" (+%d more)", o.responses-1)
		}
	}
	if o.elapsed > time.Second {
		s += fmt.Sprintf(" after %.1fs", o.elapsed.Seconds())
	}
	return s
}

// verdict classes of an outcome.
const (
	answered = "answered" // 2xx or 3xx, or an HTTP/0.9 body: the request was served
	refused  = "refused"  // 4xx, 501, 505
	failed   = "error"    // other 5xx
	noAnswer = "none"     // closed without an answer, or nothing at all
)

func (o outcome) class() string {
	switch {
	case o.raw, o.status >= 200 && o.status < 400:
		return answered
	case o.status >= 400 && o.status < 500, o.status == 501, o.status == 505:
		return refused
	case o.status >= 500:
		return failed
	}
	return noAnswer
}

// exchange sends req on a new connection to addr and reads what comes back
// until the connection closes, a response is complete and nothing more
// comes for quietAfter, or limit passes.
func exchange(addr string, req []byte, limit time.Duration) outcome {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return outcome{closed: true}
	}
	defer c.Close()
	// The write may fail when the proxy refuses early and resets the
	// connection; what it answered is still read.
	go func() {
		c.SetWriteDeadline(time.Now().Add(limit))
		c.Write(req)
	}()
	deadline := start.Add(limit)
	head := bytes.HasPrefix(req, []byte("HEAD "))
	var got []byte
	buf := make([]byte, 32<<10)
	o := outcome{}
	for {
		d := deadline
		if o.responses > 0 {
			if q := time.Now().Add(quietAfter); q.Before(d) {
				d = q
			}
		}
		c.SetReadDeadline(d)
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		parseResponses(got, &o, err != nil && !isTimeout(err), head)
		if err != nil {
			if !isTimeout(err) {
				o.closed = true
			} else if len(got) == 0 {
				o.hang = true
			}
			break
		}
		if len(got) > 1<<20 {
			break
		}
	}
	o.elapsed = time.Since(start)
	return o
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// parseResponses counts the complete responses in b and notes the first
// final status. atEOF: the connection has ended, which ends a body framed
// by the close. head: the first request is a HEAD, so the first final
// response has no body whatever its Content-Length says.
func parseResponses(b []byte, o *outcome, atEOF, head bool) {
	o.status, o.responses, o.raw = 0, 0, false
	if k := min(len(b), 5); k > 0 && !bytes.Equal(b[:k], []byte("HTTP/")[:k]) {
		o.raw = true
		return
	}
	br := bufio.NewReader(bytes.NewReader(b))
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if !strings.HasPrefix(line, "HTTP/1.") || len(line) < 12 {
			return
		}
		status, err := strconv.Atoi(line[9:12])
		if err != nil {
			return
		}
		length, chunked := int64(-1), false
		for {
			h, err := br.ReadString('\n')
			if err != nil {
				return
			}
			h = strings.TrimRight(h, "\r\n")
			if h == "" {
				break
			}
			k, v, _ := strings.Cut(h, ":")
			v = strings.TrimSpace(v)
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "content-length":
				length, _ = strconv.ParseInt(v, 10, 64)
			case "transfer-encoding":
				chunked = strings.Contains(strings.ToLower(v), "chunked")
			}
		}
		if status >= 100 && status < 200 && status != 101 {
			continue
		}
		if o.status == 0 {
			o.status = status
		}
		switch {
		case status == 204 || status == 304 || status == 101, head && o.responses == 0:
		case chunked:
			if _, err := readChunked(br, -1); err != nil {
				return
			}
		case length >= 0:
			if _, err := io.CopyN(io.Discard, br, length); err != nil {
				return
			}
		default:
			if !atEOF {
				return
			}
			io.Copy(io.Discard, br)
			o.responses++
			return
		}
		o.responses++
	}
}

// readChunked reads a chunked body and its trailers, returning the data;
// max < 0: no limit.
func readChunked(br *bufio.Reader, max int) ([]byte, error) {
	var data []byte
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return data, err
		}
		size := strings.TrimRight(line, "\r\n")
		if i := strings.IndexByte(size, ';'); i >= 0 {
			size = size[:i]
		}
		n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
		if err != nil || n < 0 || max >= 0 && int64(len(data))+n > int64(max) {
			return data, fmt.Errorf("bad chunk size line %q", line)
		}
		if n == 0 {
			for {
				tr, err := br.ReadString('\n')
				if err != nil {
					return data, err
				}
				if strings.TrimRight(tr, "\r\n") == "" {
					return data, nil
				}
			}
		}
		chunk := make([]byte, n)
		if _, err := io.ReadFull(br, chunk); err != nil {
			return data, err
		}
		data = append(data, chunk...)
		if crlf, err := br.ReadString('\n'); err != nil || crlf != "\r\n" {
			return data, fmt.Errorf("no CRLF after chunk data")
		}
	}
}

// forwarded is one request a proxy sent to its backend, as the backend read it.
type forwarded struct {
	conn     int
	method   string
	target   string
	host     string
	names    []string // header field names, as sent
	body     []byte   // dechunked
	bytes    int      // on the wire, head and body
	complete bool     // the head and the whole body arrived
	problem  string   // what the backend could not parse
}

func (f *forwarded) String() string {
	if f.method == "" {
		return fmt.Sprintf("%d bytes, no request head: %s", f.bytes, f.problem)
	}
	s := fmt.Sprintf("%s %s", f.method, clip(f.target, 40))
	if len(f.body) > 0 {
		s += fmt.Sprintf(" body %q", clip(string(f.body), 24))
	}
	if !f.complete {
		s += " INCOMPLETE"
	}
	if f.problem != "" {
		s += " (" + f.problem + ")"
	}
	return s
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + fmt.Sprintf("…(%d)", len(s))
	}
	return s
}

// rawBackend is a raw TCP backend: it records every request it receives and
// answers each with a fixed 200 and a Content-Length.
type rawBackend struct {
	addr string
	mu   sync.Mutex
	reqs []*forwarded
	nc   int
}

func startRawBackend(t *testing.T) *rawBackend {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &rawBackend{addr: l.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			r.mu.Lock()
			r.nc++
			id := r.nc
			r.mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); r.serve(c, id) }()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return r
}

// since returns the requests recorded from index i on, less health checks.
func (r *rawBackend) since(i int) []forwarded {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []forwarded
	for _, f := range r.reqs[i:] {
		if !strings.HasPrefix(f.target, healthPath) {
			out = append(out, *f)
		}
	}
	return out
}

func (r *rawBackend) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

// countingConn counts the bytes read into the request being read.
type countingConn struct {
	net.Conn
	r   *rawBackend
	cur *forwarded
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(5 * time.Minute)) // longer than the test: no upstream connection goes stale under a proxy
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.r.mu.Lock()
		if c.cur == nil {
			// Bytes before any request head was begun: a new record.
			c.cur = &forwarded{conn: -1}
			c.r.reqs = append(c.r.reqs, c.cur)
		}
		c.cur.bytes += n
		c.r.mu.Unlock()
	}
	return n, err
}

func (r *rawBackend) serve(c net.Conn, id int) {
	defer c.Close()
	cc := &countingConn{Conn: c, r: r}
	br := bufio.NewReaderSize(cc, 1<<20)
	for {
		// Wait for the next request's first byte; it opens a new record
		// (any bytes already buffered belong to it).
		r.mu.Lock()
		cc.cur = nil
		if br.Buffered() > 0 {
			cc.cur = &forwarded{conn: id, bytes: br.Buffered()}
			r.reqs = append(r.reqs, cc.cur)
		}
		r.mu.Unlock()
		if _, err := br.Peek(1); err != nil {
			return
		}
		r.mu.Lock()
		f := cc.cur
		f.conn = id
		r.mu.Unlock()
		set := func(fn func(f *forwarded)) {
			r.mu.Lock()
			fn(f)
			r.mu.Unlock()
		}
		line, err := br.ReadString('\n')
		if err != nil {
			set(func(f *forwarded) { f.problem = "no request line" })
			return
		}
		parts := strings.Fields(line)
		if len(parts) != 3 {
			set(func(f *forwarded) { f.problem = fmt.Sprintf("request line %q", clip(line, 60)) })
			return
		}
		set(func(f *forwarded) { f.method, f.target = parts[0], parts[1] })
		length, chunked, problem := int64(0), false, ""
		var names []string
		host := ""
		for {
			h, err := br.ReadString('\n')
			if err != nil {
				set(func(f *forwarded) { f.names, f.problem = names, "head cut short" })
				return
			}
			if !strings.HasSuffix(h, "\r\n") {
				problem = "a head line without CRLF"
			}
			h = strings.TrimRight(h, "\r\n")
			if h == "" {
				break
			}
			k, v, ok := strings.Cut(h, ":")
			if !ok {
				problem = fmt.Sprintf("header line %q", clip(h, 40))
				continue
			}
			names = append(names, k)
			v = strings.TrimSpace(v)
			switch strings.ToLower(k) {
			case "host":
				host = v
			case "content-length":
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 0 || length > 0 && n != length {
					problem = fmt.Sprintf("Content-Length %q", v)
				} else {
					length = n
				}
			case "transfer-encoding":
				chunked = true
				if !strings.EqualFold(v, "chunked") {
					problem = fmt.Sprintf("Transfer-Encoding %q", v)
				}
			}
		}
		if chunked && length > 0 {
			problem = "Content-Length and Transfer-Encoding"
		}
		set(func(f *forwarded) { f.names, f.host, f.problem = names, host, problem })
		var body []byte
		if chunked {
			body, err = readChunked(br, 1<<20)
		} else if length > 0 {
			body = make([]byte, min(length, 1<<20))
			var n int
			n, err = io.ReadFull(br, body)
			body = body[:n]
		}
		set(func(f *forwarded) {
			f.body = body
			f.complete = err == nil
			if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF && !isTimeout(err) && f.problem == "" {
				f.problem = err.Error()
			}
		})
		if err != nil {
			return
		}
		resp := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
		if parts[0] == "HEAD" {
			resp = strings.TrimSuffix(resp, "ok")
		}
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, resp); err != nil {
			return
		}
	}
}

// diffRow is one line of the comparison table.
type diffRow struct {
	name, about       string
	nginx, handoff    outcome
	nginxFwd, hoffFwd []forwarded
	problems          []string
}

func runDiffCase(t *testing.T, c malformedCase, ngx string, ngxBackend *rawBackend, hoff string, hoffBackend *rawBackend) diffRow {
	row := diffRow{name: c.name, about: c.about}
	n0, h0 := ngxBackend.count(), hoffBackend.count()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); row.nginx = exchange(ngx, c.request, answerWithin) }()
	go func() { defer wg.Done(); row.handoff = exchange(hoff, c.request, answerWithin) }()
	wg.Wait()
	time.Sleep(100 * time.Millisecond) // a forward still on its way
	row.nginxFwd, row.hoffFwd = ngxBackend.since(n0), hoffBackend.since(h0)
	row.problems = compareDiff(c, row)
	for _, p := range row.problems {
		t.Errorf("%s", p)
	}
	if len(row.problems) > 0 {
		t.Logf("%s: %s\nrequest %q\nnginx: %s; forwarded %s\nhandoff: %s; forwarded %s",
			c.name, c.about, clip(string(c.request), 400), row.nginx, fwdList(row.nginxFwd), row.handoff, fwdList(row.hoffFwd))
	}
	return row
}

// compareDiff returns what handoff did that nginx's standard forbids.
func compareDiff(c malformedCase, row diffRow) []string {
	var p []string
	ng, ho := row.nginx, row.handoff
	switch {
	case ho.hang:
		p = append(p, fmt.Sprintf("handoff did not answer within %s (nginx: %s)", answerWithin, ng))
	case ho.class() == noAnswer && ng.class() != noAnswer:
		p = append(p, fmt.Sprintf("handoff closed without answering (%s); nginx answered %s", ho, ng))
	case ho.class() == answered && ng.class() != answered:
		p = append(p, fmt.Sprintf("handoff served it (%s); nginx did not (%s)", ho, ng))
	case ho.class() == failed && ng.class() != failed:
		p = append(p, fmt.Sprintf("handoff answered %s; nginx %s", ho, ng))
	}
	nb, hb := fwdBytes(row.nginxFwd), fwdBytes(row.hoffFwd)
	if nb == 0 && hb > 0 {
		p = append(p, fmt.Sprintf("nginx forwarded nothing; handoff forwarded %d bytes: %s", hb, fwdList(row.hoffFwd)))
		return p
	}
	if len(row.hoffFwd) > len(row.nginxFwd) {
		p = append(p, fmt.Sprintf("handoff forwarded %d requests, nginx %d: %s", len(row.hoffFwd), len(row.nginxFwd), fwdList(row.hoffFwd)))
	}
	target := requestTarget(c.request)
	sent := clientHeaderNames(c.request)
	for i := 0; i < len(row.hoffFwd) && i < len(row.nginxFwd); i++ {
		h, n := row.hoffFwd[i], row.nginxFwd[i]
		if h.method != n.method {
			p = append(p, fmt.Sprintf("request %d: handoff forwarded method %q, nginx %q", i+1, h.method, n.method))
		}
		if !bytes.HasPrefix(n.body, h.body) || h.complete && n.complete && !bytes.Equal(h.body, n.body) {
			p = append(p, fmt.Sprintf("request %d: handoff forwarded body %q, nginx %q", i+1, clip(string(h.body), 60), clip(string(n.body), 60)))
		}
		// Where nginx changed the target (normalized it, or made an
		// absolute form origin-form), handoff must not pass on what nginx
		// did not.
		if i == 0 && n.target != target && h.target != n.target {
			p = append(p, fmt.Sprintf("request %d: handoff forwarded target %q; nginx rewrote %q to %q", i+1, clip(h.target, 60), clip(target, 60), clip(n.target, 60)))
		}
		if n.host != nginxHost && !strings.EqualFold(hostOnly(h.host), n.host) {
			p = append(p, fmt.Sprintf("request %d: handoff forwarded Host %q; nginx %q", i+1, h.host, n.host))
		}
		nginxNames := map[string]bool{}
		for _, k := range n.names {
			nginxNames[strings.ToLower(k)] = true
		}
		for _, k := range h.names {
			lk := strings.ToLower(k)
			if sent[lk] && !proxyHeaders[lk] && !nginxNames[lk] {
				p = append(p, fmt.Sprintf("request %d: handoff forwarded the client's header %q; nginx did not", i+1, k))
			}
		}
		if h.problem != "" && n.problem == "" {
			p = append(p, fmt.Sprintf("request %d: handoff forwarded a malformed request: %s", i+1, h.problem))
		}
	}
	return p
}

// proxyHeaders are set or framed by each proxy itself, not compared.
var proxyHeaders = map[string]bool{
	"host": true, "connection": true, "keep-alive": true, "proxy-connection": true, "te": true,
	"trailer": true, "transfer-encoding": true, "content-length": true, "upgrade": true, "expect": true,
	"x-forwarded-for": true, "x-forwarded-host": true, "x-forwarded-proto": true,
}

func fwdBytes(fs []forwarded) int {
	n := 0
	for _, f := range fs {
		n += f.bytes
	}
	return n
}

func fwdList(fs []forwarded) string {
	if len(fs) == 0 {
		return "nothing"
	}
	var s []string
	for _, f := range fs {
		s = append(s, f.String())
	}
	return strings.Join(s, "; ")
}

// requestTarget is the target of the case's request line.
func requestTarget(req []byte) string {
	line, _, _ := bytes.Cut(req, []byte("\n"))
	parts := strings.Fields(string(line))
	if len(parts) < 2 {
		return ""
	}
	return parts[1]
}

// clientHeaderNames are the lower-cased names of the header lines the case sends.
func clientHeaderNames(req []byte) map[string]bool {
	names := map[string]bool{}
	head, _, _ := bytes.Cut(req, []byte("\r\n\r\n"))
	lines := strings.Split(string(head), "\n")
	for _, l := range lines[1:] {
		if k, _, ok := strings.Cut(strings.TrimRight(l, "\r"), ":"); ok && k != "" {
			names[strings.ToLower(k)] = true
		}
	}
	return names
}

// hostOnly drops the port from a Host value, as nginx's $host does.
func hostOnly(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i >= 0 {
			return h[:i+1]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		return h[:i]
	}
	return h
}

func countFailed(rows []diffRow) int {
	n := 0
	for _, r := range rows {
		if len(r.problems) > 0 {
			n++
		}
	}
	return n
}

func diffTable(rows []diffRow) string {
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "case\tnginx\tnginx forwarded\thandoff\thandoff forwarded\tverdict")
	for _, r := range rows {
		verdict := "ok"
		if len(r.problems) > 0 {
			verdict = "FAIL: " + strings.Join(r.problems, " | ")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.name, r.nginx, clip(fwdList(r.nginxFwd), 70), r.handoff, clip(fwdList(r.hoffFwd), 70), verdict)
	}
	w.Flush()
	return b.String()
}

// TestDifferentialChecks proves the checks of TestMalformedVersusNginx
// catch what they are for, without nginx: the case format, and each rule
// on made-up outcomes.
func TestDifferentialChecks(t *testing.T) {
	about, req, err := decodeCase("# about it\n# more\nGET /\\*{3}a HTTP/1.1\\r\\n\nX: \\x01\\0\\t\\\\\\r\\n\n\\r\\n\n")
	if err != nil || about != "about it" || string(req) != "GET /aaa HTTP/1.1\r\nX: \x01\x00\t\\\r\n\r\n" {
		t.Fatalf("decodeCase: %q %q %v", about, req, err)
	}
	for _, bad := range []string{"GET \\q", "GET \\x1", "\\*{3}", "x\\"} {
		if _, _, err := decodeCase(bad); err == nil {
			t.Errorf("decodeCase(%q) took it", bad)
		}
	}

	c := malformedCase{name: "c", request: []byte("GET /a/../b HTTP/1.1\r\nHost: example.com\r\nX_Y: 1\r\n\r\n")}
	fwd := func(target, host string, names ...string) forwarded {
		return forwarded{method: "GET", target: target, host: host, names: names, bytes: 50, complete: true}
	}
	ok200 := outcome{status: 200, responses: 1}
	cases := []struct {
		name        string
		row         diffRow
		wantProblem string // "" for none
	}{
		{"same", diffRow{nginx: ok200, handoff: ok200, nginxFwd: []forwarded{fwd("/a/../b", "example.com")}, hoffFwd: []forwarded{fwd("/b", "example.com")}}, ""},
		{"stricter", diffRow{nginx: ok200, handoff: outcome{status: 400}, nginxFwd: []forwarded{fwd("/a/../b", "example.com")}}, ""},
		{"hang", diffRow{nginx: outcome{status: 400}, handoff: outcome{hang: true}}, "did not answer"},
		{"served what nginx refused", diffRow{nginx: outcome{status: 400}, handoff: ok200, hoffFwd: []forwarded{fwd("/b", "example.com")}}, "nginx did not"},
		{"closed where nginx answered", diffRow{nginx: outcome{status: 400}, handoff: outcome{closed: true}}, "closed without answering"},
		{"502", diffRow{nginx: ok200, handoff: outcome{status: 502}, nginxFwd: []forwarded{fwd("/a/../b", "example.com")}}, "answered 502"},
		{"forwarded where nginx did not", diffRow{nginx: outcome{status: 400}, handoff: outcome{status: 400}, hoffFwd: []forwarded{{bytes: 10}}}, "nginx forwarded nothing"},
		{"more requests", diffRow{nginx: ok200, handoff: ok200, nginxFwd: []forwarded{fwd("/x", "example.com")}, hoffFwd: []forwarded{fwd("/x", "example.com"), fwd("/smuggled", "example.com")}}, "forwarded 2 requests"},
		{"header nginx dropped", diffRow{nginx: ok200, handoff: ok200, nginxFwd: []forwarded{fwd("/a/../b", "example.com")}, hoffFwd: []forwarded{fwd("/b", "example.com", "X_Y")}}, `header "X_Y"`},
		{"other Host", diffRow{nginx: ok200, handoff: ok200, nginxFwd: []forwarded{fwd("/a/../b", "example.com")}, hoffFwd: []forwarded{fwd("/b", "example.com.:80")}}, "Host"},
		{"target nginx rewrote", diffRow{nginx: ok200, handoff: ok200, nginxFwd: []forwarded{fwd("/b", "example.com")}, hoffFwd: []forwarded{fwd("/a/../b", "example.com")}}, "rewrote"},
	}
	for _, tc := range cases {
		got := strings.Join(compareDiff(c, tc.row), " | ")
		if tc.wantProblem == "" && got != "" || !strings.Contains(got, tc.wantProblem) {
			t.Errorf("%s: problems %q, want one containing %q", tc.name, got, tc.wantProblem)
		}
	}
}
