package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/meshlens/meshlens/internal/lab"
	"github.com/meshlens/meshlens/internal/topology"
)

const defaultLabDir = "meshlens-lab"

func newLabCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "A real-packet Clos fabric of network namespaces, with meshlens running in it and real faults (root)",
		Long: `meshlens lab builds a folded-Clos fabric out of Linux network namespaces:
one per host and switch, veth pairs for links, switches routing with
5-tuple ECMP, addresses from 198.18.0.0/15 only, and a management network
of its own that carries the telemetry. It runs the server and one real
agent per host in it, and injects real faults with nftables, link state
and a userspace delay relay. Everything it creates is recorded under
--dir, and 'lab down' removes exactly that.`,
	}
	cmd.AddCommand(newLabUpCmd(), newLabDownCmd(), newLabStatusCmd(), newLabFaultCmd(), newLabRelayCmd(), newLabForwardCmd())
	return cmd
}

func requireRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("lab: meshlens lab needs root (it creates network namespaces, veth links and nftables rules): run it with sudo")
	}
	return nil
}

func newLabUpCmd() *cobra.Command {
	var cfg lab.Config
	var topoFile string
	// The topo gen flags, and its generator, as they are: the lab adds
	// nothing but a host range of its own.
	gen := newTopoGenCmd()
	gf := gen.Flags()
	for name, def := range map[string]string{"base-addr": lab.DefaultHostBase, "switch-base-addr": lab.DefaultSwitchBase} {
		if f := gf.Lookup(name); f != nil {
			_ = f.Value.Set(def)
			f.DefValue = def
		}
	}
	cmd := &cobra.Command{
		Use:   "up [--topology FILE | topo gen flags]",
		Short: "Build the lab, start the server and agents in it, print the UI URL",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			var changed []string
			gf.VisitAll(func(f *pflag.Flag) {
				if cmd.Flags().Changed(f.Name) {
					changed = append(changed, "--"+f.Name)
				}
			})
			var err error
			if topoFile != "" {
				if len(changed) > 0 {
					return fmt.Errorf("lab up: --topology and %s exclude each other", strings.Join(changed, ", "))
				}
				cfg.Topology, err = topology.Load(topoFile)
			} else {
				var buf bytes.Buffer
				gen.SetOut(&buf)
				if err = gen.RunE(gen, nil); err == nil {
					cfg.Topology, err = topology.Parse("topo gen", buf.Bytes())
				}
			}
			if err != nil {
				return err
			}
			cfg.Out = cmd.ErrOrStderr()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			st, err := lab.Up(ctx, cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), `
meshlens lab %s is up (%d hosts, %d switches; state in %s)

  UI:        %s
  Suspects:  curl -s %sapi/v1/suspects
  NATS:      %s (management network, inside the lab)
  Status:    meshlens lab status --dir %s
  A fault:   meshlens lab fault add link_loss %s --rate 0.2 --dir %s
  Down:      meshlens lab down --dir %s
`, st.ID, len(cfg.Topology.Hosts), len(cfg.Topology.Switches), st.Dir, st.UIURL, st.UIURL, st.NATSURL, st.Dir,
				exampleLink(cfg.Topology), st.Dir, st.Dir)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "dir", defaultLabDir, "the lab's directory: state, logs, server data")
	f.StringVar(&cfg.ID, "id", "ml", "prefix of the lab's namespace names (1-8 lower-case letters and digits)")
	f.StringVar(&topoFile, "topology", "", "topology file (hosts in 198.18.0.0/16); default: generated from the topo gen flags")
	f.StringVar(&cfg.UIAddr, "ui-addr", "127.0.0.1:9790", "loopback address the UI is forwarded to (port 0: any free port)")
	f.BoolVar(&cfg.Agents, "agents", true, "start a real agent in every host namespace")
	f.IntVar(&cfg.ICMP.RatelimitMS, "icmp-ratelimit", 1000, "net.ipv4.icmp_ratelimit in every namespace (ms between ICMP errors per target; 0: no limit)")
	f.IntVar(&cfg.ICMP.MsgsPerSec, "icmp-msgs-per-sec", 1000, "net.ipv4.icmp_msgs_per_sec in every namespace")
	f.StringSliceVar(&cfg.ServerArgs, "server-arg", nil, "extra flag for meshlens server, e.g. --server-arg=--window=5s (repeatable)")
	f.AddFlagSet(gf)
	return cmd
}

// exampleLink names a leaf–spine link for the printed example.
func exampleLink(t *topology.Topology) string {
	for _, l := range t.Links {
		a, b := t.Switch(l.A), t.Switch(l.B)
		if a != nil && b != nil && a.Role == topology.RoleLeaf && b.Role == topology.RoleSpine {
			return l.Name()
		}
	}
	if len(t.Links) > 0 {
		return t.Links[0].Name()
	}
	return "A--B"
}

func newLabDownCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove exactly what lab up created: its processes (by pid), namespaces, links and nft tables",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			return lab.Down(dir, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&dir, "dir", defaultLabDir, "the lab's directory")
	return cmd
}

func newLabStatusCmd() *cobra.Command {
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the lab's server URL, namespaces, processes and faults in force",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, release, err := lab.Open(dir, nil)
			if err != nil {
				return err
			}
			defer release()
			st := l.Status()
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			fmt.Fprintf(out, "lab %s (%s)\nUI:   %s\nNATS: %s\n", st.ID, st.Dir, st.UIURL, st.NATSURL)
			fmt.Fprintf(out, "namespaces (%d): %s\n", len(st.Namespaces), strings.Join(st.Namespaces, " "))
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PROCESS\tPID\tNAMESPACE\tRUNNING")
			for _, p := range st.Procs {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%t\n", p.Name, p.Pid, p.NS, p.Running)
			}
			tw.Flush()
			if len(st.Faults) == 0 {
				fmt.Fprintln(out, "faults: none")
			}
			for _, f := range st.Faults {
				fmt.Fprintf(out, "fault: %s\n", f)
			}
			for k, why := range st.Unavailable {
				fmt.Fprintf(out, "unavailable: %s: %s\n", k, why)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", defaultLabDir, "the lab's directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newLabFaultCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "fault", Short: "Inject and clear real faults in the lab"}
	var dir string
	var req lab.FaultRequest
	var direction string
	kinds := make([]string, 0, len(lab.AllKinds()))
	for _, k := range lab.AllKinds() {
		kinds = append(kinds, string(k))
	}
	add := &cobra.Command{
		Use:   "add KIND ELEMENT",
		Short: "Inject a fault: " + strings.Join(kinds, ", "),
		Long: `Inject a real fault into the lab's fabric:

  link_loss LINK     --rate R      nftables drops a random R of packets leaving the link's end(s)
  link_latency LINK  --add D       a userspace relay spliced into the link delays every frame by D
  link_down LINK                   both ends of the link administratively down
  device_down SWITCH               the switch forwards, accepts and sends nothing (links stay up)
  blackhole SWITCH   --fraction F  the switch drops the flows whose source port is in a share F of ports
  device_loss SWITCH --rate R      the switch drops a random R of the packets it forwards
  host_nic HOST      --rate R      the host's fabric interface drops a random R both ways
  host_down HOST                   the host accepts and sends nothing, management network included

LINK is A--B (both directions, or --direction a-to-b|b-to-a) or A->B.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			req.Kind, req.Element, req.Direction = lab.FaultKind(args[0]), args[1], lab.Direction(direction)
			if !slices.Contains(lab.AllKinds(), req.Kind) {
				return fmt.Errorf("lab: unknown fault kind %q; kinds: %s", args[0], strings.Join(kinds, ", "))
			}
			l, release, err := lab.Open(dir, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer release()
			f, err := l.AddFault(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "fault in force: %s\n", f)
			return nil
		},
	}
	af := add.Flags()
	af.Float64Var(&req.Rate, "rate", 0, "loss rate, 0..1 (link_loss, device_loss, host_nic)")
	af.Float64Var(&req.Fraction, "fraction", 0, "share of flows dropped, 0..1 (blackhole)")
	af.DurationVar(&req.Add, "add", 0, "delay added (link_latency)")
	af.StringVar(&direction, "direction", "", "link direction: both, a-to-b, b-to-a (default both, or the arrow's)")
	clear := &cobra.Command{
		Use:   "clear [ELEMENT]",
		Short: "Clear the faults on ELEMENT, or all faults",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			l, release, err := lab.Open(dir, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer release()
			element := ""
			if len(args) == 1 {
				element = args[0]
			}
			cleared, err := l.ClearFaults(cmd.Context(), element)
			for _, f := range cleared {
				fmt.Fprintf(cmd.OutOrStdout(), "cleared: %s\n", f)
			}
			if len(cleared) == 0 && err == nil {
				fmt.Fprintln(cmd.OutOrStdout(), "no fault to clear")
			}
			return err
		},
	}
	for _, c := range []*cobra.Command{add, clear} {
		c.Flags().StringVar(&dir, "dir", defaultLabDir, "the lab's directory")
	}
	cmd.AddCommand(add, clear)
	return cmd
}

// newLabRelayCmd is the delay relay lab fault add link_latency starts in
// the lab's relay namespace; --dir only marks the process as the lab's.
func newLabRelayCmd() *cobra.Command {
	var r lab.Relay
	var dir string
	cmd := &cobra.Command{
		Use:    "relay",
		Short:  "Copy frames between two interfaces after a delay (started by lab fault add link_latency)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			r.Ready = func() { fmt.Fprintln(cmd.ErrOrStderr(), lab.RelayReadyLine()) }
			err := r.Run(ctx)
			fmt.Fprintf(cmd.ErrOrStderr(), "relay %s<->%s: %d frames forwarded, %d dropped\n", r.A, r.B, r.Forwarded.Load(), r.Dropped.Load())
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "the lab's directory")
	f.StringVar(&r.A, "a", "", "interface towards the link's A end")
	f.StringVar(&r.B, "b", "", "interface towards the link's B end")
	f.DurationVar(&r.DelayAB, "delay-ab", 0, "delay of frames from A to B")
	f.DurationVar(&r.DelayBA, "delay-ba", 0, "delay of frames from B to A")
	return cmd
}

// newLabForwardCmd forwards the UI from the lab's management network to
// the machine's loopback (started by lab up).
func newLabForwardCmd() *cobra.Command {
	var fw lab.Forwarder
	var dir string
	cmd := &cobra.Command{
		Use:    "forward",
		Short:  "Forward a loopback port to an address in a lab namespace (started by lab up)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			fw.Ready = func(addr string) { fmt.Fprintln(cmd.ErrOrStderr(), lab.ForwardingLine(addr)) }
			return fw.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "the lab's directory")
	f.StringVar(&fw.Listen, "listen", "127.0.0.1:9790", "loopback address to listen on")
	f.StringVar(&fw.NS, "netns", "", "namespace to dial from")
	f.StringVar(&fw.To, "to", "", "address to dial")
	return cmd
}

func init() { extraCommands = append(extraCommands, newLabCmd) }
