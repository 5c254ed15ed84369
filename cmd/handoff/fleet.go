package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/fleet"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newFleetCmd) }

func newFleetCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleet status|drain|ready|maint|forget|deploy",
		Short: "The nodes sharing a Postgres state: who is live, who is lost, who is out of rotation",
		Long: `Every handoff serve whose state: is the same postgres:// URL is a node of one
fleet (see docs/fleet.md). 'handoff fleet status' lists them; drain, ready
and maint move a node at the load balancer (its agent-check port and its
fleet.drain_path answer accordingly); forget removes a lost node for good.
Any node's socket can act on any node.`,
		Args: args(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			return usagef("missing subcommand: status, drain, ready, maint or forget\nRun 'handoff fleet --help' for usage.")
		},
	}
	cmd.AddCommand(fleetStatusCmd(g), fleetForgetCmd(g), fleetDeployCmd(g))
	for _, s := range []struct{ state, short string }{
		{"drain", "Take a node out of rotation at the load balancer and wait (--wait) until its traffic has stopped"},
		{"ready", "Put a node back into rotation at the load balancer"},
		{"maint", "Put a node into maintenance at the load balancer (HAProxy: MAINT; health path: 503)"},
	} {
		cmd.AddCommand(fleetDrainCmd(g, s.state, s.short))
	}
	return cmd
}

func fleetStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status",
		Short: "List every node: last heartbeat, lost or live, drain state, releases",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			var st *control.Status
			err := g.call(30*time.Second, func(ctx context.Context, cl *control.Client) (err error) {
				st, err = cl.Status(ctx, "")
				return err
			})
			if err != nil {
				return err
			}
			if st.Node == "" {
				return fmt.Errorf("this handoff is not part of a fleet: its state: is not a postgres:// URL")
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), control.FleetStatus{Node: st.Node, Nodes: st.Nodes})
			}
			printNodes(c.OutOrStdout(), st.Nodes)
			// An unfinished fleet deploy is why the releases may differ.
			for _, w := range st.Warnings {
				if strings.HasPrefix(w, "fleet deploy of ") {
					fmt.Fprintln(c.OutOrStdout(), w)
				}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print as JSON (stable; see docs/api.md)")
	return c
}

func fleetDrainCmd(g *globals, state, short string) *cobra.Command {
	req := control.FleetRequest{State: state}
	var asJSON bool
	c := &cobra.Command{
		Use:   state + " [NODE]",
		Short: short,
		Long: short + `.

NODE defaults to the node whose socket this is. The node must be live: a
lost node is named and nothing changes. The state is kept across a restart
of the node.`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			req.Node, req.Actor = optionalApp(a), actor()
			var st *control.FleetStatus
			// A drain with --wait lasts up to fleet.drain_timeout plus the
			// load balancer's checks; the server bounds it, not the CLI.
			err := g.call(24*time.Hour, func(ctx context.Context, cl *control.Client) (err error) {
				st, err = cl.FleetDrain(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), st)
			}
			printNodes(c.OutOrStdout(), st.Nodes)
			return nil
		},
	}
	if state == "drain" {
		c.Flags().BoolVar(&req.Wait, "wait", false, "return once the node's gateway has seen no request for a check interval and has none in flight")
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the nodes as JSON")
	return c
}

func fleetForgetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "forget NODE",
		Short: "Remove a lost node from the fleet (a host taken out of service)",
		Long: `Remove a lost node from the fleet: fleet-wide changes stop waiting for it.
A live node is refused. If the node starts again it joins again.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			var st *control.FleetStatus
			err := g.call(30*time.Second, func(ctx context.Context, cl *control.Client) (err error) {
				st, err = cl.FleetForget(ctx, control.FleetRequest{Node: a[0], Actor: actor()})
				return err
			})
			if err != nil {
				return err
			}
			printNodes(c.OutOrStdout(), st.Nodes)
			return nil
		},
	}
}

func fleetDeployCmd(g *globals) *cobra.Command {
	var req control.FleetDeployRequest
	var asJSON bool
	c := &cobra.Command{
		Use:   "deploy APP --release NAME",
		Short: "Roll a release out host by host: drain each at the load balancer, deploy, put it back",
		Long: `Roll a release of a supervised app out over every node, fleet.batch hosts at
a time with fleet.wait between batches. The release is looked up by its name
(the last element of --release) in each host's releases: directory; if a host
lacks it, nothing changes and the hosts are named. Each host of a batch is
drained at the load balancer, runs its own deploy (bricks, release command,
health gate, as 'handoff deploy' on it), and is put back into rotation. A
failure halts the fleet deploy: the hosts already done are rolled back and
every host is put back into rotation. One fleet deploy of an app at a time
(a lease); any node may run it.`,
		Example: "  handoff fleet deploy web --release v42",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			req.App, req.Actor = a[0], actor()
			return runFleetDeploy(c, g, req, asJSON)
		},
	}
	c.Flags().StringVar(&req.Release, "release", "", "the release: its name, or a path whose last element is its name")
	c.Flags().StringVar((*string)(&req.Strategy), "strategy", "", "each host's own deploy: rolling or all (default: as the app deploys)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the hosts as JSON")
	return c
}

// runFleetDeploy runs a fleet deploy and prints each host's outcome.
func runFleetDeploy(c *cobra.Command, g *globals, req control.FleetDeployRequest, asJSON bool) error {
	var d *control.FleetDeploy
	err := g.call(24*time.Hour, func(ctx context.Context, cl *control.Client) (err error) {
		d, err = cl.FleetDeploy(ctx, req)
		return err
	})
	if d != nil && len(d.Hosts) > 0 && !asJSON {
		printFleetHosts(c.OutOrStdout(), d)
	}
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(c.OutOrStdout(), d)
	}
	return nil
}

func printFleetHosts(w io.Writer, d *control.FleetDeploy) {
	for _, h := range d.Hosts {
		fmt.Fprintf(w, "batch %d  %s  %s %s\n", h.Batch, h.Node, h.State, h.Detail)
	}
}

// printNodes lists the fleet's nodes, lost ones included, and says
// whether one release runs across the board.
func printNodes(w io.Writer, nodes []fleet.Node) {
	if len(nodes) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tHOST\tHEARTBEAT\tSTATE\tLB\tRELEASES")
	releases := map[string]map[string]bool{} // app → releases on any node
	for _, n := range nodes {
		name := n.Name
		if n.Self {
			name += " (this node)"
		}
		state := "live"
		if n.Lost {
			state = "LOST"
		}
		var rels []string
		for _, app := range sortedApps(n.Releases) {
			rels = append(rels, app+" "+n.ReleasesOf(app))
			if releases[app] == nil {
				releases[app] = map[string]bool{}
			}
			for _, r := range n.Releases[app] {
				releases[app][r] = true
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s ago\t%s\t%s\t%s\n", name, n.Host, n.Since.Round(100*time.Millisecond), state, n.Drain, strings.Join(rels, ", "))
	}
	tw.Flush()
	for _, app := range slices.Sorted(maps.Keys(releases)) {
		if rs := releases[app]; len(rs) > 1 {
			names := slices.Sorted(maps.Keys(rs))
			fmt.Fprintf(w, "%s runs %s across the fleet: not one release across the board\n", app, strings.Join(names, " and "))
		}
	}
}

func sortedApps(m map[string][]string) []string { return slices.Sorted(maps.Keys(m)) }
