package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/spf13/cobra"
)

// setMode sends a mode change and prints each affected app's mode.
func setMode(c *cobra.Command, g *globals, mode string, req control.ModeRequest, asJSON bool) error {
	req.Actor = actor()
	var st *control.Status
	err := g.call(30*time.Second, func(ctx context.Context, cl *control.Client) (err error) {
		st, err = cl.SetMode(ctx, mode, req)
		return err
	})
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(c.OutOrStdout(), st)
	}
	for _, a := range st.Apps {
		printMode(c.OutOrStdout(), a)
	}
	return nil
}

func printMode(w io.Writer, a control.AppStatus) {
	line := fmt.Sprintf("%s: %s", a.App, a.Mode)
	if ro := a.Modes.ReadOnly; ro != nil && !ro.Until.IsZero() {
		line += fmt.Sprintf(" (read-only until %s)", ro.Until.Local().Format(time.TimeOnly))
	}
	if a.Held > 0 {
		line += fmt.Sprintf(", %d requests held", a.Held)
	}
	fmt.Fprintln(w, line)
}
