package main

import "github.com/spf13/cobra"

func init() { commands = append(commands, newDBCmd) }

// dbCommands holds one constructor per `handoff db` subcommand; each file
// registers its own (db status, db switchover).
var dbCommands []func(*globals) *cobra.Command

func newDBCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "db status|switchover",
		Short: "The database server itself: its endpoint, its replicas, a switchover",
		Long: `Show the database endpoints handoff fronts, and move one to its caught-up
replica under one deadline (see docs/databases.md).`,
		Args: args(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			return usagef("missing subcommand: status or switchover\nRun 'handoff db --help' for usage.")
		},
	}
	for _, add := range dbCommands {
		cmd.AddCommand(add(g))
	}
	return cmd
}
