package main

import (
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, readonlyCmd) }

func readonlyCmd(g *globals) *cobra.Command {
	var req control.ModeRequest
	var forDur time.Duration
	var asJSON bool
	c := &cobra.Command{
		Use:   "readonly on|off",
		Short: "Refuse writes, serve reads, and show a banner — at once, no restart",
		Long: `Switch read-only mode for one app (--app) or for all apps.

In read-only mode POST, PUT, PATCH and DELETE get 503 with Retry-After and a
short explanation (HTML or JSON by the request's Accept), except on the
paths in readonly.allow; GETs are served with a banner injected into HTML
pages; the app sees the header Handoff-Read-Only: 1. With --for it switches
itself off; 'handoff status' warns when it has been on longer than
readonly.warn_after.`,
		Example: `  handoff readonly on --banner "Upgrading, back to normal by 10:30" --for 30m
  handoff readonly off`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			on, err := onOff(a[0])
			if err != nil {
				return err
			}
			req.On, req.For = on, config.Duration(forDur)
			return setMode(c, g, "readonly", req, asJSON)
		},
	}
	c.Flags().StringVar(&req.App, "app", "", "the app (default: all apps)")
	c.Flags().StringVar(&req.Banner, "banner", "", "the banner's text (default: readonly.banner)")
	c.Flags().DurationVar(&forDur, "for", 0, "switch read-only off again after this long, e.g. 2h")
	c.Flags().BoolVar(&asJSON, "json", false, "print the resulting status as JSON")
	return c
}
