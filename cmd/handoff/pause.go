package main

import (
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, pauseCmd) }

func pauseCmd(g *globals) *cobra.Command {
	var req control.ModeRequest
	var maxHold time.Duration
	var asJSON bool
	c := &cobra.Command{
		Use:   "pause",
		Short: "Hold new requests (not refuse them) until 'handoff resume'",
		Long: `Pause one app (--app) or all apps: new requests are held, in-flight ones
finish. On 'handoff resume' the held requests go on in arrival order. A
request held longer than --max (default: the app's hold_max), or beyond the
hold.max_requests / hold.max_bytes bounds, gets 503 with Retry-After — never
a hang.`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			req.On, req.Max = true, config.Duration(maxHold)
			return setMode(c, g, "pause", req, asJSON)
		},
	}
	c.Flags().StringVar(&req.App, "app", "", "the app (default: all apps)")
	c.Flags().DurationVar(&maxHold, "max", 0, "hold each request at most this long (default: hold_max)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the resulting status as JSON")
	return c
}
