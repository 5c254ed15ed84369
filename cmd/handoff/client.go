package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
)

// defaultConfig is read when --config is not given and the file exists.
const defaultConfig = "handoff.yaml"

// loadConfig reads --config, else ./handoff.yaml. With required false and
// no file, it returns the defaults.
func (g *globals) loadConfig(required bool) (*config.Config, error) {
	path := g.config
	if path == "" {
		if _, err := os.Stat(defaultConfig); err != nil {
			if required {
				return nil, usagef("no config: give --config FILE, or run where handoff.yaml is (see docs/config.md)")
			}
			return config.Default(), nil
		}
		path = defaultConfig
	}
	return config.Load(path)
}

// client finds the running server: --socket, $HANDOFF_SOCKET, the config's
// socket:, else ./handoff.sock.
func (g *globals) client() (*control.Client, error) {
	socket := g.socket
	if socket == "" {
		socket = os.Getenv("HANDOFF_SOCKET")
	}
	if socket == "" {
		cfg, err := g.loadConfig(false)
		if err != nil {
			return nil, err
		}
		socket = cfg.Socket
	}
	return control.Dial(socket), nil
}

// call runs one request against the server, bounded by timeout, and turns
// an API error into the CLI's.
func (g *globals) call(timeout time.Duration, do func(ctx context.Context, cl *control.Client) error) error {
	cl, err := g.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return apiError(do(ctx, cl))
}

// optionalApp is the [APP] argument of a command, or "" for every app.
func optionalApp(a []string) string {
	if len(a) == 1 {
		return a[0]
	}
	return ""
}

// actor names who ran a command, for the event log.
func actor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host + " (cli)"
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// apiError turns a control API error into the CLI's error, keeping the
// server's message as the whole of it.
func apiError(err error) error {
	var ae *control.APIError
	if errors.As(err, &ae) {
		if ae.Status == 400 {
			return usageError{errors.New(ae.Message)}
		}
		return errors.New(ae.Message)
	}
	return err
}

// onOff parses the on|off argument of a mode command.
func onOff(arg string) (bool, error) {
	switch arg {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, usagef("want on or off, got %q", arg)
}

func fprintf(w io.Writer, format string, args ...any) { fmt.Fprintf(w, format, args...) }
