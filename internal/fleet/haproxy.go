package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// HAProxyAPI drives one server line of HAProxy through its runtime API (a
// stats socket with "level admin"): the third way to take a host out of
// rotation, beside the agent-check port and the drain path, for an HAProxy
// whose config an operator would rather not give an agent check. HAProxy
// keeps what it is told until it is told otherwise or restarts.
type HAProxyAPI struct {
	// Addr is the stats socket: an absolute path (a unix socket) or
	// host:port (a "stats socket ipv4@…" line).
	Addr string
	// Server is the server line to drive, as BACKEND/SERVER.
	Server string
	// Timeout bounds one exchange with HAProxy; default 2 s.
	Timeout time.Duration
}

// haproxyName is what HAProxy allows in a proxy's or a server's name. It
// also keeps a name from carrying a second command (a space, a ';', a
// newline) into the socket.
var haproxyName = regexp.MustCompile(`^[A-Za-z0-9._:-]+/[A-Za-z0-9._:-]+$`)

// CheckHAProxyServer says what is wrong with a BACKEND/SERVER name, or nil.
func CheckHAProxyServer(s string) error {
	if !haproxyName.MatchString(s) {
		return fmt.Errorf("want BACKEND/SERVER as in haproxy.cfg (letters, digits, '.', '_', ':', '-'), got %q", s)
	}
	return nil
}

// haproxyState is what HAProxy's "set server … state" calls each drain
// state: draining and drained are both HAProxy's drain (no new requests,
// those in flight finish).
func haproxyState(d DrainState) (string, error) {
	switch d {
	case Ready:
		return "ready", nil
	case Draining, Drained:
		return "drain", nil
	case Maint:
		return "maint", nil
	}
	return "", fmt.Errorf("no HAProxy state for drain state %q", d)
}

// Set tells HAProxy where this server stands: "set server B/S state
// ready|drain|maint". An answer other than the empty one (HAProxy's "No
// such server.", "Permission denied" at a level below admin) is an error.
func (h HAProxyAPI) Set(ctx context.Context, d DrainState) error {
	st, err := haproxyState(d)
	if err != nil {
		return err
	}
	if err := CheckHAProxyServer(h.Server); err != nil {
		return err
	}
	out, err := h.Command(ctx, "set server "+h.Server+" state "+st)
	if err != nil {
		return err
	}
	if out != "" {
		return fmt.Errorf("haproxy at %s refused 'set server %s state %s': %s", h.Addr, h.Server, st, out)
	}
	return nil
}

// The admin state bits of "show servers state" (HAProxy's SRV_ADMF_*):
// forced, inherited, configured, resolution and hostname maintenance, and
// forced or inherited drain.
const (
	admMaint = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
	admDrain = 0x08 | 0x10
)

// State reads back what HAProxy holds for this server, from "show servers
// state BACKEND": ready, drain or maint (maintenance wins over drain, as
// in HAProxy).
func (h HAProxyAPI) State(ctx context.Context) (DrainState, error) {
	if err := CheckHAProxyServer(h.Server); err != nil {
		return "", err
	}
	be, srv, _ := strings.Cut(h.Server, "/")
	out, err := h.Command(ctx, "show servers state "+be)
	if err != nil {
		return "", err
	}
	var cols []string
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "# "); ok {
			cols = strings.Fields(rest)
			continue
		}
		f := strings.Fields(line)
		name, admin := field(cols, f, "srv_name"), field(cols, f, "srv_admin_state")
		if name != srv || admin == "" {
			continue
		}
		bits, err := strconv.Atoi(admin)
		if err != nil {
			return "", fmt.Errorf("haproxy at %s: srv_admin_state %q of %s", h.Addr, admin, h.Server)
		}
		switch {
		case bits&admMaint != 0:
			return Maint, nil
		case bits&admDrain != 0:
			return Drained, nil
		}
		return Ready, nil
	}
	return "", fmt.Errorf("haproxy at %s has no server %s: %s", h.Addr, h.Server, firstLine(out))
}

// field is the column named col of a "show servers state" line.
func field(cols, f []string, col string) string {
	for i, c := range cols {
		if c == col && i < len(f) {
			return f[i]
		}
	}
	return ""
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// Command sends one command to the runtime API and returns HAProxy's
// answer, trimmed. HAProxy answers and closes the connection (it is not
// put in interactive mode), so the answer is all it writes.
func (h HAProxyAPI) Command(ctx context.Context, cmd string) (string, error) {
	if strings.ContainsAny(cmd, "\n;") {
		return "", errors.New("one HAProxy command at a time")
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	network := "tcp"
	if strings.HasPrefix(h.Addr, "/") {
		network = "unix"
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, h.Addr)
	if err != nil {
		return "", fmt.Errorf("haproxy runtime API at %s: %w", h.Addr, err)
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy runtime API at %s: %w", h.Addr, err)
	}
	var b strings.Builder
	if _, err := io.Copy(&b, c); err != nil {
		return "", fmt.Errorf("haproxy runtime API at %s: %q: %w", h.Addr, cmd, err)
	}
	return strings.TrimSpace(b.String()), nil
}
