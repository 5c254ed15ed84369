package main

import (
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, maintenanceCmd) }

func maintenanceCmd(g *globals) *cobra.Command {
	var req control.ModeRequest
	var retry time.Duration
	var asJSON bool
	c := &cobra.Command{
		Use:   "maintenance on|off",
		Short: "Answer every request with the maintenance page (503, Retry-After)",
		Long: `Switch maintenance mode for one app (--app) or for all apps. Every request
gets the maintenance page — the built-in one or maintenance.page — with 503
and Retry-After; programs get JSON. Health checks of the instances go on.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			on, err := onOff(a[0])
			if err != nil {
				return err
			}
			req.On, req.RetryAfter = on, config.Duration(retry)
			return setMode(c, g, "maintenance", req, asJSON)
		},
	}
	c.Flags().StringVar(&req.App, "app", "", "the app (default: all apps)")
	c.Flags().DurationVar(&retry, "retry-after", 0, "the Retry-After to send (default: maintenance.retry_after)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the resulting status as JSON")
	return c
}
