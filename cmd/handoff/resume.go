package main

import (
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, resumeCmd) }

func resumeCmd(g *globals) *cobra.Command {
	var req control.ModeRequest
	var asJSON bool
	c := &cobra.Command{
		Use:   "resume",
		Short: "End a pause: held requests go on, in arrival order",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			return setMode(c, g, "resume", req, asJSON)
		},
	}
	c.Flags().StringVar(&req.App, "app", "", "the app (default: all apps)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the resulting status as JSON")
	return c
}
