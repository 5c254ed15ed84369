package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestConformance: the gateway is transparent in front of real application
// servers written by others. Each server runs a tiny echo app (sources in
// testdata/appservers/) that reports exactly what it received; a raw-socket
// client writes exact bytes through handoff serve and parses the answers
// itself. Every server × case pair is its own subtest, so a failure names
// both. Servers are started once each; one whose binary is missing is
// skipped (a failure when CI or HANDOFF_TEST_APPSERVERS=1 is set), and
// `bash .ci/install-appservers` installs them all.
//
// Some server APIs cannot express a feature a case needs — WSGI, ASGI, PSGI
// and PHP have no request or response trailers, and only some servers have
// a WebSocket without extra packages. Such a pair is skipped with the
// reason (appServer.lacks), which is the server's limit, not the gateway's.
func TestConformance(t *testing.T) {
	for _, srv := range appServers {
		t.Run(srv.name, func(t *testing.T) {
			addr := srv.start(t)
			n := newNode(t, fmt.Sprintf("  web:\n    targets: [%q]\n    health: { path: /healthz }\n", addr))
			env := &confEnv{srv: srv, gateway: n.gateway, backend: addr}
			for _, c := range confCases {
				t.Run(c.name, func(t *testing.T) {
					if why, ok := srv.lacks[c.needs]; c.needs != "" && ok {
						t.Skipf("%s cannot do this: %s", srv.name, why)
					}
					c.run(t, env)
				})
			}
		})
	}
}

// confHost is the Host every request carries; the app is the gateway's
// default app, so any Host reaches it.
const confHost = "conformance.test"

// confValue is sent in a header of every request and must reach the app
// byte for byte: inner spaces, quotes, commas and semicolons are the
// field's value, not its syntax.
const confValue = `spaced  out, "quoted" ; x=1`

// confFixed is the body of /fixed.
var confFixed = []byte(strings.Repeat("0123456789abcdef", 64))

// Features of a server's API that some cases need.
const (
	featReqTrailers  = "request trailers"
	featRespTrailers = "response trailers"
	featWebSocket    = "websocket"
)

type confEnv struct {
	srv     *appServer
	gateway string // handoff's gateway address
	backend string // the app server's own address
}

// appServer is one real application server with the echo app on it.
type appServer struct {
	name string
	// lacks names what the server's API cannot do, and why.
	lacks map[string]string
	// start starts the server on a free port, waits until /healthz
	// answers, arranges for it to be stopped, and returns its address.
	start func(t *testing.T) string
}

var appServers = []*appServer{
	{name: "go", start: startGoServer},
	{name: "node", start: startNodeServer},
	{name: "gunicorn", start: startGunicorn, lacks: map[string]string{
		featReqTrailers:  "WSGI does not expose request trailers",
		featRespTrailers: "WSGI cannot send response trailers",
		featWebSocket:    "WSGI has no WebSocket",
	}},
	{name: "uvicorn", start: startUvicorn, lacks: map[string]string{
		featReqTrailers:  "ASGI (uvicorn 0.17) does not expose request trailers",
		featRespTrailers: "ASGI (uvicorn 0.17) cannot send response trailers",
	}},
	{name: "tomcat", start: startTomcat, lacks: map[string]string{
		featWebSocket: "Tomcat's WebSocket needs a JSR 356 endpoint and annotation scanning; the echo app is one servlet",
	}},
	{name: "apache-php", start: startApachePHP, lacks: map[string]string{
		featReqTrailers:  "PHP does not expose request trailers",
		featRespTrailers: "PHP cannot send response trailers",
		featWebSocket:    "mod_php has no WebSocket",
	}},
	{name: "starman", start: startStarman, lacks: map[string]string{
		featReqTrailers:  "PSGI does not expose request trailers",
		featRespTrailers: "PSGI cannot send response trailers",
		featWebSocket:    "Starman has no WebSocket of its own",
	}},
}

// ---- starting the servers -------------------------------------------------

// appServersRequired: a missing server fails the test instead of skipping.
func appServersRequired() bool {
	return os.Getenv("CI") != "" || os.Getenv("HANDOFF_TEST_APPSERVERS") == "1"
}

// needFiles skips (or fails, see appServersRequired) unless every file
// exists; a name without a slash is looked up on PATH. It returns the
// files' paths.
func needFiles(t *testing.T, names ...string) []string {
	t.Helper()
	var paths []string
	for _, name := range names {
		p := name
		var err error
		if strings.ContainsRune(name, '/') {
			_, err = os.Stat(name)
		} else {
			p, err = exec.LookPath(name)
		}
		if err != nil {
			msg := fmt.Sprintf("%s not found: `bash .ci/install-appservers` installs the app servers this test runs", name)
			if appServersRequired() {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
		paths = append(paths, p)
	}
	return paths
}

func appSource(t *testing.T, parts ...string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(append([]string{"testdata", "appservers"}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startAppProcess runs cmd in a process group of its own, waits until the
// server answers /healthz at addr, and stops the whole group (prefork
// workers too) when the test ends.
func startAppProcess(t *testing.T, addr string, cmd *exec.Cmd, startTimeout time.Duration) {
	t.Helper()
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	pgid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
		}
		// Workers that outlived their parent are still in its group.
		if syscall.Kill(-pgid, 0) == nil {
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(cmd.Path), out.String())
		}
	})
	began := time.Now()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-exited:
			t.Fatalf("%s exited at start:\n%s", cmd.Path, out.String())
		default:
		}
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Logf("%s (%s) answered after %s", path.Base(t.Name()), filepath.Base(cmd.Path), time.Since(began).Round(time.Millisecond))
				return
			}
		}
		if time.Since(began) > startTimeout {
			t.Fatalf("%s did not answer /healthz within %s:\n%s", cmd.Path, startTimeout, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func splitPort(t *testing.T, addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func startGoServer(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(goEchoApp), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func startNodeServer(t *testing.T) string {
	bin := needFiles(t, "node")[0]
	addr := freeAddr(t)
	startAppProcess(t, addr, exec.Command(bin, appSource(t, "node", "server.js"), splitPort(t, addr)), 30*time.Second)
	return addr
}

func startGunicorn(t *testing.T) string {
	bin := needFiles(t, "/usr/bin/gunicorn")[0]
	addr := freeAddr(t)
	// gthread keeps connections alive (the sync worker closes each one).
	cmd := exec.Command(bin, "--chdir", appSource(t, "gunicorn"), "-k", "gthread", "--threads", "8", "-w", "1",
		"--keep-alive", "30", "-b", addr, "app:app")
	startAppProcess(t, addr, cmd, 30*time.Second)
	return addr
}

func startUvicorn(t *testing.T) string {
	py := needFiles(t, "/usr/bin/python3")[0]
	if out, err := exec.Command(py, "-c", "import uvicorn, h11, wsproto").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("uvicorn with h11 and wsproto not importable (%v: %s): `bash .ci/install-appservers` installs the app servers this test runs", err, bytes.TrimSpace(out))
		if appServersRequired() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	addr := freeAddr(t)
	cmd := exec.Command(py, "-m", "uvicorn", "--app-dir", appSource(t, "uvicorn"), "--http", "h11", "--ws", "wsproto",
		"--host", "127.0.0.1", "--port", splitPort(t, addr), "--timeout-keep-alive", "30", "--no-access-log", "app:app")
	startAppProcess(t, addr, cmd, 30*time.Second)
	return addr
}

func startStarman(t *testing.T) string {
	bin := needFiles(t, "starman")[0]
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--listen", addr, "--workers", "4", "--keepalive-timeout", "30", appSource(t, "starman", "app.psgi"))
	startAppProcess(t, addr, cmd, 30*time.Second)
	return addr
}

// startTomcat compiles the servlet and runs catalina from a temporary
// CATALINA_BASE. It takes about 7 s to answer on 2 cores.
func startTomcat(t *testing.T) string {
	files := needFiles(t, "/usr/share/tomcat10/bin/catalina.sh", "/usr/share/java/tomcat10-servlet-api.jar", "javac", "java")
	catalina, api, javac := files[0], files[1], files[2]
	base := t.TempDir()
	classes := filepath.Join(base, "webapps", "ROOT", "WEB-INF", "classes")
	for _, d := range []string{"conf", "logs", "temp", "work", classes} {
		if !filepath.IsAbs(d) {
			d = filepath.Join(base, d)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	tmpl, err := os.ReadFile(appSource(t, "tomcat", "server.xml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.ReplaceAll(string(tmpl), "@PORT@", splitPort(t, addr))
	if err := os.WriteFile(filepath.Join(base, "conf", "server.xml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{
		"web.xml":     filepath.Join(base, "webapps", "ROOT", "WEB-INF", "web.xml"),
		"context.xml": filepath.Join(base, "conf", "context.xml"),
	} {
		b, err := os.ReadFile(appSource(t, "tomcat", src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	began := time.Now()
	if out, err := exec.Command(javac, "-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", "-d", classes, "-cp", api, appSource(t, "tomcat", "Echo.java")).CombinedOutput(); err != nil {
		t.Fatalf("javac Echo.java: %v\n%s", err, out)
	}
	t.Logf("javac Echo.java took %s", time.Since(began).Round(time.Millisecond))
	cmd := exec.Command(catalina, "run")
	cmd.Env = append(os.Environ(), "CATALINA_HOME=/usr/share/tomcat10", "CATALINA_BASE="+base, "CATALINA_TMPDIR="+filepath.Join(base, "temp"),
		"JAVA_OPTS=-Djava.security.egd=file:/dev/./urandom -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xmx256m")
	startAppProcess(t, addr, cmd, 90*time.Second)
	return addr
}

// startApachePHP runs apache2 -DFOREGROUND with its own config in a temp dir
// (world-readable: the workers run as nobody when the test is root).
func startApachePHP(t *testing.T) string {
	apache := needFiles(t, "/usr/sbin/apache2", "/usr/lib/apache2/modules/mod_mpm_prefork.so")[0]
	mods, _ := filepath.Glob("/usr/lib/apache2/modules/libphp*.so")
	if len(mods) == 0 {
		needFiles(t, "/usr/lib/apache2/modules/libphp8.2.so") // skips or fails, naming it
	}
	dir, err := os.MkdirTemp("", "handoff-apache-php-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	php, err := os.ReadFile(appSource(t, "apache-php", "app.php"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.php"), php, 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile(appSource(t, "apache-php", "httpd.conf.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	user := ""
	if os.Geteuid() == 0 {
		user = "User #65534\nGroup #65534"
	}
	conf := strings.NewReplacer("@DIR@", dir, "@PORT@", splitPort(t, addr), "@PHP@", mods[0], "@USER@", user).Replace(string(tmpl))
	if err := os.WriteFile(filepath.Join(dir, "httpd.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startAppProcess(t, addr, exec.Command(apache, "-f", filepath.Join(dir, "httpd.conf"), "-DFOREGROUND"), 30*time.Second)
	return addr
}

// ---- the Go net/http echo app (in-process) -----------------------------------

func goEchoApp(w http.ResponseWriter, r *http.Request) {
	const name = "go"
	switch r.URL.Path {
	case "/healthz":
		io.WriteString(w, "ok")
	case "/echo", "/slow":
		if r.URL.Path == "/slow" {
			time.Sleep(300 * time.Millisecond)
		}
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		// net/http keeps no header order and takes Host out of Header.
		headers := [][2]string{{"Host", r.Host}}
		for k, vv := range r.Header {
			for _, v := range vv {
				headers = append(headers, [2]string{k, v})
			}
		}
		if len(r.TransferEncoding) > 0 {
			headers = append(headers, [2]string{"Transfer-Encoding", strings.Join(r.TransferEncoding, ", ")})
		}
		trailers := [][2]string{}
		for k, vv := range r.Trailer {
			for _, v := range vv {
				trailers = append(trailers, [2]string{k, v})
			}
		}
		out, _ := json.Marshal(echoReport{Server: name, Method: r.Method, Target: r.RequestURI, Headers: headers,
			BodyLen: n, BodySHA: hex.EncodeToString(h.Sum(nil)), Trailers: trailers})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		w.Header().Set("X-Backend", name)
		w.Write(out)
	case "/fixed":
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(confFixed)))
		w.Header().Set("X-Backend", name)
		w.Header()["Set-Cookie"] = []string{"a=1; Path=/", "b=2; Path=/"}
		w.Write(confFixed)
	case "/empty":
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Empty", "1")
		w.WriteHeader(http.StatusNoContent)
	case "/notmod":
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("X-Backend", name)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "6")
		io.WriteString(w, "fresh\n")
	case "/trailers":
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Backend", name)
		w.Header().Set("Trailer", "X-Checksum")
		h := sha256.New()
		for i := range 3 {
			part := fmt.Sprintf("chunk-%d\n", i)
			h.Write([]byte(part))
			io.WriteString(w, part)
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
		w.Header().Set("X-Checksum", hex.EncodeToString(h.Sum(nil)))
	case "/stream":
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		for i := range 4 {
			if i > 0 {
				time.Sleep(250 * time.Millisecond)
			}
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
		}
	case "/ws":
		goWebSocketEcho(w, r)
	default:
		w.Header().Set("X-Backend", name)
		http.NotFound(w, r)
	}
}

// goWebSocketEcho is a hand-written WebSocket echo: unfragmented frames
// are echoed with their opcode, a Close is answered with a Close.
func goWebSocketEcho(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-Websocket-Key")
	if key == "" || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "not a websocket handshake", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + wsAccept(key) + "\r\n\r\n")
	if brw.Flush() != nil {
		return
	}
	for range 100 {
		op, payload, err := wsReadFrame(brw.Reader)
		if err != nil {
			return
		}
		switch op {
		case 8:
			conn.Write(wsFrame(8, payload, false))
			return
		case 9:
			conn.Write(wsFrame(10, payload, false))
		case 1, 2:
			conn.Write(wsFrame(op, payload, false))
		}
	}
}

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsFrame is one final frame; a client's is masked.
func wsFrame(op byte, payload []byte, mask bool) []byte {
	b := []byte{0x80 | op}
	m := byte(0)
	if mask {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, m|byte(n))
	case n < 1<<16:
		b = append(b, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !mask {
		return append(b, payload...)
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// wsReadFrame reads one frame (at most 1 MiB), unmasking it.
func wsReadFrame(br *bufio.Reader) (op byte, payload []byte, err error) {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, nil, err
	}
	if hdr[0]&0x80 == 0 {
		return 0, nil, errors.New("fragmented frame")
	}
	op = hdr[0] & 0x0f
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	var key [4]byte
	masked := hdr[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(br, key[:]); err != nil {
			return 0, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(br, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return op, payload, nil
}

// ---- the raw client ------------------------------------------------------------

// echoReport is what /echo and /slow answer.
type echoReport struct {
	Server   string      `json:"server"`
	Method   string      `json:"method"`
	Target   string      `json:"target"`
	Headers  [][2]string `json:"headers"`
	BodyLen  int64       `json:"body_len"`
	BodySHA  string      `json:"body_sha256"`
	Trailers [][2]string `json:"trailers"` // null where the server does not expose them
}

// byteLog keeps the first and the last bytes of a stream, for failure
// messages that show the raw bytes.
type byteLog struct {
	head, tail []byte
	total      int64
}

const byteLogHead, byteLogTail = 3072, 1024

func (l *byteLog) Write(p []byte) (int, error) {
	n := len(p)
	l.total += int64(len(p))
	if room := byteLogHead - len(l.head); room > 0 {
		k := min(room, len(p))
		l.head = append(l.head, p[:k]...)
		p = p[k:]
	}
	l.tail = append(l.tail, p...)
	if len(l.tail) > byteLogTail {
		l.tail = append(l.tail[:0], l.tail[len(l.tail)-byteLogTail:]...)
	}
	return n, nil
}

func (l *byteLog) String() string {
	if skipped := l.total - int64(len(l.head)) - int64(len(l.tail)); skipped > 0 {
		return fmt.Sprintf("%q …(%d bytes)… %q", l.head, skipped, l.tail)
	}
	return fmt.Sprintf("%q", append(append([]byte(nil), l.head...), l.tail...))
}

// rawClient is one client connection to the gateway that writes exact
// bytes and parses the answers itself.
type rawClient struct {
	t          *testing.T
	env        *confEnv
	conn       net.Conn
	br         *bufio.Reader
	sent, recv byteLog
}

func dialRaw(t *testing.T, env *confEnv) *rawClient {
	t.Helper()
	return dialRawAddr(t, env, env.gateway)
}

// dialRawAddr connects to addr: the app server itself, for a baseline.
func dialRawAddr(t *testing.T, env *confEnv, addr string) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { conn.Close() })
	c := &rawClient{t: t, env: env, conn: conn}
	c.br = bufio.NewReaderSize(io.TeeReader(conn, &c.recv), 64<<10)
	return c
}

// fatalf fails the test with the raw bytes sent and received so far.
func (c *rawClient) fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("%s\n  client sent %d bytes: %s\n  client received %d bytes: %s", fmt.Sprintf(format, args...),
		c.sent.total, c.sent.String(), c.recv.total, c.recv.String())
}

func (c *rawClient) errorf(format string, args ...any) {
	c.t.Helper()
	c.t.Errorf("%s\n  client received %d bytes: %s", fmt.Sprintf(format, args...), c.recv.total, c.recv.String())
}

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	c.sent.Write(b)
	if _, err := c.conn.Write(b); err != nil {
		c.fatalf("write: %v", err)
	}
}

// rawResponse is one response as it came over the wire.
type rawResponse struct {
	status   int
	headers  [][2]string // in order, names as sent
	body     []byte
	chunked  bool
	trailers [][2]string
}

func fieldValues(fields [][2]string, name string) []string {
	var out []string
	for _, f := range fields {
		if strings.EqualFold(f[0], name) {
			out = append(out, f[1])
		}
	}
	return out
}

func (r *rawResponse) values(name string) []string { return fieldValues(r.headers, name) }

func (r *rawResponse) get(name string) string {
	if v := r.values(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// readFields reads header or trailer lines up to the empty line.
func (c *rawClient) readFields(what string) [][2]string {
	c.t.Helper()
	var fields [][2]string
	for range 200 {
		line, err := c.br.ReadString('\n')
		if err != nil {
			c.fatalf("reading %s: %v", what, err)
		}
		if !strings.HasSuffix(line, "\r\n") {
			c.errorf("%s line %q does not end in CRLF", what, line)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return fields
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			c.fatalf("malformed %s line %q", what, line)
		}
		fields = append(fields, [2]string{k, strings.Trim(v, " \t")})
	}
	c.fatalf("more than 200 %s lines", what)
	return nil
}

// readHead reads a status line and headers.
func (c *rawClient) readHead() *rawResponse {
	c.t.Helper()
	line, err := c.br.ReadString('\n')
	if err != nil {
		c.fatalf("reading status line: %v", err)
	}
	proto, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	code, _, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if proto != "HTTP/1.1" || err != nil || len(code) != 3 {
		c.fatalf("malformed status line %q", line)
	}
	return &rawResponse{status: status, headers: c.readFields("header")}
}

// readBody reads the body the head frames, and a chunked body's trailers.
// A response may declare its length once, and not with both headers.
func (c *rawClient) readBody(r *rawResponse, method string) {
	c.t.Helper()
	te, cl := r.values("Transfer-Encoding"), r.values("Content-Length")
	if len(cl) > 1 {
		c.errorf("response has %d Content-Length headers: %q", len(cl), cl)
	}
	if len(te) > 1 || (len(te) > 0 && len(cl) > 0) {
		c.errorf("response has Transfer-Encoding %q and Content-Length %q", te, cl)
	}
	switch {
	case method == "HEAD" || r.status/100 == 1 || r.status == 204 || r.status == 304:
	case len(te) > 0:
		if !strings.EqualFold(strings.TrimSpace(te[len(te)-1]), "chunked") {
			c.fatalf("response Transfer-Encoding %q", te)
		}
		r.chunked = true
		body, err := io.ReadAll(httputil.NewChunkedReader(c.br))
		if err != nil {
			c.fatalf("reading chunked body: %v", err)
		}
		r.body = body
		r.trailers = c.readFields("trailer")
	case len(cl) > 0:
		n, err := strconv.ParseInt(cl[0], 10, 64)
		if err != nil || n < 0 || n > 64<<20 {
			c.fatalf("response Content-Length %q", cl[0])
		}
		r.body = make([]byte, n)
		if _, err := io.ReadFull(c.br, r.body); err != nil {
			c.fatalf("reading %d-byte body: %v", n, err)
		}
	default:
		body, err := io.ReadAll(io.LimitReader(c.br, 64<<20))
		if err != nil {
			c.fatalf("reading body to the connection's end: %v", err)
		}
		r.body = body
	}
}

func (c *rawClient) readResponse(method string) *rawResponse {
	c.t.Helper()
	r := c.readHead()
	c.readBody(r, method)
	return r
}

// closes reports whether the connection ends after r.
func (r *rawResponse) closes() bool {
	for _, v := range r.values("Connection") {
		if strings.Contains(strings.ToLower(v), "close") {
			return true
		}
	}
	return false
}

// followUp sends GET /healthz on the same connection after a response
// that keeps it open: stray bytes from the last response would show here.
func (c *rawClient) followUp(last *rawResponse) {
	c.t.Helper()
	if last.closes() {
		c.t.Logf("the response closed the connection (Connection: %q); no follow-up request", last.values("Connection"))
		return
	}
	c.write([]byte("GET /healthz HTTP/1.1\r\nHost: " + confHost + "\r\n\r\n"))
	r := c.readResponse("GET")
	if r.status != 200 || string(r.body) != "ok" {
		c.fatalf("follow-up GET /healthz on the same connection: %d %q", r.status, r.body)
	}
}

// ---- requests and what the app must have received ------------------------------

// confRequest is one request as the client frames it.
type confRequest struct {
	method, target string
	token          string   // X-Conformance-Token, unique per request
	extra          []string // more header lines
	body           []byte
	chunks         []int // chunked: the chunk sizes, summing to len(body)
	trailers       [][2]string
}

func (q *confRequest) head() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nX-Conformance-Token: %s\r\nX-Conformance-Value: %s\r\n", q.method, q.target, confHost, q.token, confValue)
	for _, h := range q.extra {
		b.WriteString(h + "\r\n")
	}
	switch {
	case q.chunks != nil:
		b.WriteString("Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n")
		if len(q.trailers) > 0 {
			names := make([]string, len(q.trailers))
			for i, tr := range q.trailers {
				names[i] = tr[0]
			}
			b.WriteString("Trailer: " + strings.Join(names, ", ") + "\r\n")
		}
	case q.body != nil:
		fmt.Fprintf(&b, "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n", len(q.body))
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// framedBody is the body as it goes on the wire: chunked with a chunk
// extension on the first chunk, or as is.
func (q *confRequest) framedBody() []byte {
	if q.chunks == nil {
		return q.body
	}
	var b bytes.Buffer
	off := 0
	for i, n := range q.chunks {
		ext := ""
		if i == 0 {
			ext = ";conformance=1"
		}
		fmt.Fprintf(&b, "%x%s\r\n", n, ext)
		b.Write(q.body[off : off+n])
		b.WriteString("\r\n")
		off += n
	}
	b.WriteString("0\r\n")
	for _, tr := range q.trailers {
		b.WriteString(tr[0] + ": " + tr[1] + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

func (q *confRequest) bytes() []byte { return append(q.head(), q.framedBody()...) }

// checkEcho checks an /echo or /slow answer against the request the client
// framed: the app got the method, the target, the body, the client's own
// headers exactly once each, and at most one length header.
func (c *rawClient) checkEcho(r *rawResponse, q *confRequest) *echoReport {
	c.t.Helper()
	if r.status != 200 {
		c.fatalf("%s %s: status %d, body %q", q.method, q.target, r.status, r.body)
	}
	c.checkBackendHeader(r)
	if ct := r.get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		c.errorf("%s %s: Content-Type %q", q.method, q.target, ct)
	}
	var rep echoReport
	if err := json.Unmarshal(r.body, &rep); err != nil {
		c.fatalf("%s %s: answer is not the echo JSON: %v: %q", q.method, q.target, err, r.body)
	}
	errorf := func(format string, args ...any) {
		c.t.Helper()
		c.t.Errorf("%s %s (token %s): %s\n  the app received headers %q", q.method, q.target, q.token, fmt.Sprintf(format, args...), rep.Headers)
	}
	if rep.Server != c.env.srv.name {
		errorf("answered by %q", rep.Server)
	}
	if rep.Method != q.method {
		errorf("the app got method %q", rep.Method)
	}
	if rep.Target != q.target {
		errorf("the app got target %q", rep.Target)
	}
	sum := sha256.Sum256(q.body)
	if rep.BodyLen != int64(len(q.body)) || rep.BodySHA != hex.EncodeToString(sum[:]) {
		errorf("the app got a %d-byte body with sha256 %s; the client sent %d bytes with sha256 %x", rep.BodyLen, rep.BodySHA, len(q.body), sum)
	}
	once := func(name, want string) {
		c.t.Helper()
		if got := fieldValues(rep.Headers, name); len(got) != 1 || got[0] != want {
			errorf("%s: the app got %q, want exactly [%q]", name, got, want)
		}
	}
	once("Host", confHost)
	once("X-Conformance-Token", q.token)
	once("X-Conformance-Value", confValue)
	if q.body != nil {
		once("Content-Type", "application/octet-stream")
	}
	for _, h := range q.extra {
		k, v, _ := strings.Cut(h, ":")
		if k == "Expect" || k == "Connection" || k == "Upgrade" || k == "TE" {
			continue // hop by hop
		}
		once(k, strings.TrimSpace(v))
	}
	cl := fieldValues(rep.Headers, "Content-Length")
	te := fieldValues(rep.Headers, "Transfer-Encoding")
	if len(cl) > 1 || len(te) > 1 {
		errorf("the app got Content-Length %q and Transfer-Encoding %q: one of each at most", cl, te)
	}
	if len(cl) == 1 && cl[0] != strconv.Itoa(len(q.body)) && !(len(q.body) == 0 && cl[0] == "0") {
		errorf("the app got Content-Length %q for a %d-byte body", cl[0], len(q.body))
	}
	if q.chunks == nil && len(te) > 0 {
		errorf("the client sent Content-Length, the app got Transfer-Encoding %q", te)
	}
	return &rep
}

// checkBackendHeader: the app's X-Backend arrives once, as sent.
func (c *rawClient) checkBackendHeader(r *rawResponse) {
	c.t.Helper()
	if got := r.values("X-Backend"); len(got) != 1 || got[0] != c.env.srv.name {
		c.errorf("X-Backend %q, want exactly [%q]", got, c.env.srv.name)
	}
}

// confBody returns n bytes of deterministic noise.
func confBody(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func confToken(t *testing.T, i int) string {
	return fmt.Sprintf("%s-%d-%d", strings.ReplaceAll(t.Name(), "/", "."), i, time.Now().UnixNano()%1e6)
}

// ---- the cases -------------------------------------------------------------------

type confCase struct {
	name  string
	needs string // a feature of the server's API, or ""
	run   func(t *testing.T, env *confEnv)
}

var confCases = []confCase{
	{"post-content-length", "", confPostContentLength},
	{"chunked-post", "", confChunkedPost},
	{"request-trailer", featReqTrailers, confRequestTrailer},
	{"large-upload-8MiB", "", confLargeUpload},
	{"expect-100-continue", "", confExpectContinue},
	{"head", "", confHead},
	{"204-no-content", "", confNoContent},
	{"304-not-modified", "", confNotModified},
	{"response-trailers", "", confResponseTrailers},
	{"pipelining", "", confPipelining},
	{"sse-stream", "", confSSE},
	{"websocket", featWebSocket, confWebSocket},
	{"slow-body", "", confSlowBody},
}

func confPostContentLength(t *testing.T, env *confEnv) {
	c := dialRaw(t, env)
	q := &confRequest{method: "POST", target: "/echo?q=a%20b&x=%2F&empty=", token: confToken(t, 1),
		extra: []string{"Accept: application/json"}, body: confBody(1000, 1)}
	c.write(q.bytes())
	r := c.readResponse("POST")
	c.checkEcho(r, q)
	c.followUp(r)
}

func chunkedRequest(t *testing.T, withTrailer bool) *confRequest {
	q := &confRequest{method: "POST", target: "/echo?chunked=1", token: confToken(t, 1),
		body: confBody(1+4000+65543, 2), chunks: []int{1, 4000, 65543}}
	if withTrailer {
		q.trailers = [][2]string{{"X-Checksum", "sha256-of-the-body"}}
	}
	return q
}

func confChunkedPost(t *testing.T, env *confEnv) {
	c := dialRaw(t, env)
	q := chunkedRequest(t, true)
	c.write(q.bytes())
	r := c.readResponse("POST")
	c.checkEcho(r, q)
	c.followUp(r)
}

// confRequestTrailer: a chunked request's trailer reaches the app. The
// same request straight to the app first: it must show the trailer there,
// or a failure through the gateway would prove nothing.
func confRequestTrailer(t *testing.T, env *confEnv) {
	for _, via := range []string{"the app directly", "the gateway"} {
		var c *rawClient
		if via == "the gateway" {
			c = dialRaw(t, env)
		} else {
			c = dialRawAddr(t, env, env.backend)
		}
		q := chunkedRequest(t, true)
		c.write(q.bytes())
		r := c.readResponse("POST")
		rep := c.checkEcho(r, q)
		if got := fieldValues(rep.Trailers, "X-Checksum"); len(got) != 1 || got[0] != "sha256-of-the-body" {
			c.errorf("through %s: the client sent the trailer %q; the app got trailers %q", via, q.trailers, rep.Trailers)
		}
		c.followUp(r)
	}
}

func confLargeUpload(t *testing.T, env *confEnv) {
	c := dialRaw(t, env)
	q := &confRequest{method: "PUT", target: "/echo?size=8MiB", token: confToken(t, 1), body: confBody(8<<20, 3)}
	// Write from a goroutine: an app that answers early must show as its
	// answer, not as a write that blocks.
	head := q.head()
	c.sent.Write(head)
	c.sent.Write(q.body)
	wrote := make(chan error, 1)
	go func() {
		_, err := c.conn.Write(append(head, q.body...))
		wrote <- err
	}()
	r := c.readResponse("PUT")
	if err := <-wrote; err != nil {
		c.fatalf("writing the 8 MiB upload: %v (answer: %d %q)", err, r.status, r.body)
	}
	c.checkEcho(r, q)
	c.followUp(r)
}

// confExpectContinue: the client waits for 100 Continue before it sends
// the body, and gets exactly one interim answer before the final one.
func confExpectContinue(t *testing.T, env *confEnv) {
	c := dialRaw(t, env)
	q := &confRequest{method: "POST", target: "/echo?expect=1", token: confToken(t, 1),
		extra: []string{"Expect: 100-continue"}, body: confBody(64<<10, 4)}
	c.write(q.head())
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := c.readHead()
	c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if r.status != 100 {
		c.readBody(r, "POST")
		c.fatalf("Expect: 100-continue: got %d before the body was sent, want 100 (body %q)", r.status, r.body)
	}
	c.write(q.body)
	r = c.readResponse("POST")
	if r.status == 100 {
		c.fatalf("a second 100 Continue")
	}
	c.checkEcho(r, q)
	c.followUp(r)
}

// confHead: HEAD and GET of the same resource in one write; the HEAD answer
// has the GET's length and no body (the GET's answer parses after it).
// gunicorn and Starman send the bare apps' body after the HEAD answer's
// head anyway (see testdata/appservers/README.md): the gateway must not
// read those bytes as the answer to the next request it sends on that
// upstream connection.
func confHead(t *testing.T, env *confEnv) {
	c := dialRaw(t, env)
	c.write([]byte("HEAD /fixed HTTP/1.1\r\nHost: " + confHost + "\r\n\r\nGET /fixed HTTP/1.1\r\nHost: " + confHost + "\r\n\r\n"))
	head := c.readResponse("HEAD")
	get := c.readResponse("GET")
	if head.status != 200 {
		c.fatalf("HEAD /fixed: status %d", head.status)
	}
	c.checkBackendHeader(head)
	if cl := head.values("Content-Length"); len(cl) > 1 || (len(cl) == 1 && cl[0] != strconv.Itoa(len(confFixed))) {
		c.errorf("HEAD /fixed: Content-Length %q, want none or [%d]", cl, len(confFixed))
	}
	checkFixed(c, get)
	c.followUp(get)
}

func checkFixed(c *rawClient, r *rawResponse) {
	c.t.Helper()
	if r.status != 200 || !bytes.Equal(r.body, confFixed) {
		c.fatalf("GET /fixed: status %d, body %q", r.status, r.body)
	}
	c.checkBackendHeader(r)
	if got := r.values("Set-Cookie"); len(got) != 2 || got[0] != "a=1; Path=/" || got[1] != "b=2; Path=/" {
		c.errorf("GET /fixed: Set-Cookie %q, want the app's two", got)
	}
	if cl := r.values("Content-Length"); !r.chunked && (len(cl) != 1 || cl[0] != strconv.Itoa(len(confFixed))) {
		c.errorf("GET /fixed: Content-Length %q, want [%d]", cl, len(confFixed))
	}
}

func confNoContent(t *testing.T, env *confEnv) {
	c := dialRaw(t, env)
	c.write([]byte("GET /empty HTTP/1.1\r\nHost: " + confHost + "\r\n\r\n"))
	r := c.readResponse("GET")
	if r.status != 204 {
		c.fatalf("GET /empty: status %d, want 204", r.status)
	}
	c.checkBackendHeader(r)
	if got := r.values("X-Empty"); len(got) != 1 || got[0] != "1" {
		c.errorf("GET /empty: X-Empty %q", got)
	}
	if cl, te := r.values("Content-Length"), r.values("Transfer-Encoding"); len(cl)+len(te) > 0 {
		c.errorf("204 with Content-Length %q, Transfer-Encoding %q", cl, te)
	}
	c.followUp(r)
}

func confNotModified(t *testing.T, env *confEnv) {
	c := dialRaw(t, env)
	c.write([]byte("GET /notmod HTTP/1.1\r\nHost: " + confHost + "\r\nIf-None-Match: \"v1\"\r\n\r\n"))
	r := c.readResponse("GET")
	if r.status != 304 {
		c.fatalf("GET /notmod with If-None-Match: status %d, want 304 (body %q)", r.status, r.body)
	}
	c.checkBackendHeader(r)
	if got := r.values("ETag"); len(got) != 1 || got[0] != `"v1"` {
		c.errorf("304: ETag %q", got)
	}
	if te := r.values("Transfer-Encoding"); len(te) > 0 {
		c.errorf("304 with Transfer-Encoding %q", te)
	}
	c.write([]byte("GET /notmod HTTP/1.1\r\nHost: " + confHost + "\r\n\r\n"))
	r = c.readResponse("GET")
	if r.status != 200 || string(r.body) != "fresh\n" || r.get("ETag") != `"v1"` {
		c.fatalf("GET /notmod: %d ETag %q body %q", r.status, r.values("ETag"), r.body)
	}
	c.followUp(r)
}

// confResponseTrailers: a chunked answer's body, and its trailer where the
// app can send one, reach the client.
func confResponseTrailers(t *testing.T, env *confEnv) {
	c := dialRaw(t, env)
	c.write([]byte("GET /trailers HTTP/1.1\r\nHost: " + confHost + "\r\nTE: trailers\r\n\r\n"))
	r := c.readResponse("GET")
	want := "chunk-0\nchunk-1\nchunk-2\n"
	if r.status != 200 || string(r.body) != want {
		c.fatalf("GET /trailers: status %d, body %q, want %q", r.status, r.body, want)
	}
	c.checkBackendHeader(r)
	if why, lacks := env.srv.lacks[featRespTrailers]; lacks {
		t.Logf("%s; only the body was checked", why)
	} else {
		sum := sha256.Sum256([]byte(want))
		if got := fieldValues(r.trailers, "X-Checksum"); !r.chunked || len(got) != 1 || got[0] != hex.EncodeToString(sum[:]) {
			c.errorf("the app sent the trailer X-Checksum: %x; the client got chunked=%v, trailers %q", sum, r.chunked, r.trailers)
		}
	}
	c.followUp(r)
}

// confPipelining: four requests in one write, answered in order though
// the first is the slowest (the app waits 300 ms before it reads its body).
func confPipelining(t *testing.T, env *confEnv) {
	c := dialRaw(t, env)
	slow := &confRequest{method: "POST", target: "/slow?pipelined=1", token: confToken(t, 1), body: []byte("pipelined one")}
	put := &confRequest{method: "PUT", target: "/echo?pipelined=3", token: confToken(t, 3),
		body: []byte("pipelined three, chunked"), chunks: []int{10, 14}}
	var b bytes.Buffer
	b.Write(slow.bytes())
	b.WriteString("GET /fixed HTTP/1.1\r\nHost: " + confHost + "\r\n\r\n")
	b.Write(put.bytes())
	b.WriteString("GET /healthz HTTP/1.1\r\nHost: " + confHost + "\r\n\r\n")
	c.write(b.Bytes())
	c.checkEcho(c.readResponse("POST"), slow)
	checkFixed(c, c.readResponse("GET"))
	c.checkEcho(c.readResponse("PUT"), put)
	r := c.readResponse("GET")
	if r.status != 200 || string(r.body) != "ok" {
		c.fatalf("pipelined GET /healthz: %d %q", r.status, r.body)
	}
	c.followUp(r)
}

// confSSE: the app sends four events 250 ms apart; they must reach the
// client as they are sent, not all at the end.
func confSSE(t *testing.T, env *confEnv) {
	c := dialRaw(t, env)
	c.write([]byte("GET /stream HTTP/1.1\r\nHost: " + confHost + "\r\nAccept: text/event-stream\r\n\r\n"))
	r := c.readHead()
	if r.status != 200 || !strings.HasPrefix(r.get("Content-Type"), "text/event-stream") {
		c.fatalf("GET /stream: status %d, Content-Type %q", r.status, r.get("Content-Type"))
	}
	var body io.Reader
	switch te, cl := r.values("Transfer-Encoding"), r.values("Content-Length"); {
	case len(te) > 0:
		r.chunked = true
		body = httputil.NewChunkedReader(c.br)
	case len(cl) > 0:
		c.fatalf("an event stream with Content-Length %q", cl)
	default:
		body = c.br // until the connection closes
	}
	var got []string
	var at []time.Time
	var buf []byte
	p := make([]byte, 4096)
	for len(got) < 4 && len(buf) < 1<<16 {
		n, err := body.Read(p)
		buf = append(buf, p[:n]...)
		for {
			i := bytes.Index(buf, []byte("\n\n"))
			if i < 0 {
				break
			}
			got = append(got, string(buf[:i]))
			at = append(at, time.Now())
			buf = buf[i+2:]
		}
		if err != nil {
			break
		}
	}
	want := []string{"data: event 0", "data: event 1", "data: event 2", "data: event 3"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		c.fatalf("events %q, want %q", got, want)
	}
	if span := at[3].Sub(at[0]); span < 375*time.Millisecond {
		c.errorf("the four events, sent over 750 ms, arrived within %s: buffered, not streamed", span)
	}
	if r.chunked {
		if rest, err := io.ReadAll(body); err != nil || len(rest) > 0 || len(buf) > 0 {
			c.fatalf("after the events: %q %q %v", buf, rest, err)
		}
		c.readFields("trailer")
		c.followUp(r)
	}
}

func confWebSocket(t *testing.T, env *confEnv) {
	c := dialRaw(t, env)
	key := base64.StdEncoding.EncodeToString(confBody(16, 5))
	c.write([]byte("GET /ws HTTP/1.1\r\nHost: " + confHost + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\nX-Conformance-Token: " + confToken(t, 1) + "\r\n\r\n"))
	r := c.readHead()
	if r.status != 101 {
		c.readBody(r, "GET")
		c.fatalf("WebSocket handshake: status %d, body %q", r.status, r.body)
	}
	if !strings.EqualFold(r.get("Upgrade"), "websocket") || !strings.Contains(strings.ToLower(r.get("Connection")), "upgrade") {
		c.errorf("101 with Upgrade %q, Connection %q", r.values("Upgrade"), r.values("Connection"))
	}
	if got := r.values("Sec-WebSocket-Accept"); len(got) != 1 || got[0] != wsAccept(key) {
		c.errorf("Sec-WebSocket-Accept %q, want [%q]", got, wsAccept(key))
	}
	for i, m := range []struct {
		op      byte
		payload []byte
	}{{1, []byte("hello conformance")}, {2, confBody(1000, 6)}, {2, confBody(70000, 7)}} {
		c.write(wsFrame(m.op, m.payload, true))
		op, payload, err := wsReadFrame(c.br)
		if err != nil {
			c.fatalf("message %d: reading the echo: %v", i, err)
		}
		if op != m.op || !bytes.Equal(payload, m.payload) {
			c.fatalf("message %d: sent opcode %d with %d bytes, got opcode %d with %d bytes", i, m.op, len(m.payload), op, len(payload))
		}
	}
	c.write(wsFrame(8, []byte{0x03, 0xe8}, true))
	op, payload, err := wsReadFrame(c.br)
	if err != nil || op != 8 {
		c.fatalf("after the client's Close: opcode %d payload %q err %v, want a Close", op, payload, err)
	}
	if len(payload) >= 2 && binary.BigEndian.Uint16(payload) != 1000 {
		c.errorf("Close with code %d, want 1000", binary.BigEndian.Uint16(payload))
	}
}

// confSlowBody: the body comes in six pieces 200 ms apart, and the app
// waits 300 ms before it reads it.
func confSlowBody(t *testing.T, env *confEnv) {
	c := dialRaw(t, env)
	q := &confRequest{method: "POST", target: "/slow", token: confToken(t, 1), body: confBody(48<<10, 8)}
	c.write(q.head())
	piece := len(q.body) / 6
	for i := range 6 {
		time.Sleep(200 * time.Millisecond)
		c.write(q.body[i*piece : (i+1)*piece])
	}
	r := c.readResponse("POST")
	c.checkEcho(r, q)
	c.followUp(r)
}
