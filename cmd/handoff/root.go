package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes, as DESIGN.md promises: 0 done, 1 failed, 2 usage error.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// usageError marks an error as the caller's misuse of the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// globals are the flags every command shares.
type globals struct {
	config string
	socket string
	json   bool
}

func run(args []string) int {
	g := &globals{}
	root := &cobra.Command{
		Use:   "handoff",
		Short: "Upgrade a live web application — code, schema and data — without its users noticing",
		Long: `handoff stands in front of your application as its gateway, runs its
processes and runs the database changes a release needs, so that a release
is one command and nobody sees an error page.

Start with 'handoff demo' to watch a whole release under load.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.config, "config", "", "config file (default ./handoff.yaml when it exists)")
	root.PersistentFlags().StringVar(&g.socket, "socket", "", "control socket of a running server (default $HANDOFF_SOCKET, the config's socket:, or ./handoff.sock)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w\nRun '%s --help' for usage.", err, c.CommandPath())}
	})
	for _, add := range commands {
		root.AddCommand(add(g))
	}
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(os.Stderr, "handoff: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return exitUsage
	}
	return exitFail
}

// commands holds one constructor per subcommand; each file registers its own.
var commands []func(*globals) *cobra.Command

// isCobraUsage recognises the errors cobra itself returns for an unknown command.
func isCobraUsage(err error) bool {
	return strings.Contains(err.Error(), "unknown command")
}

// args wraps a cobra argument check so that its failure is a usage error.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(c *cobra.Command, a []string) error {
		if err := check(c, a); err != nil {
			return usageError{fmt.Errorf("%w\nRun '%s --help' for usage.", err, c.CommandPath())}
		}
		return nil
	}
}
