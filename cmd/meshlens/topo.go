package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"time"

	"github.com/spf13/cobra"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/pinglist"
	"github.com/meshlens/meshlens/internal/topology"
	"github.com/meshlens/meshlens/internal/wire"
)

func newTopoCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "topo", Short: "Generate, check and inspect topology files"}
	cmd.AddCommand(newTopoGenCmd(), newTopoCheckCmd(), newTopoPinglistCmd())
	return cmd
}

func newTopoGenCmd() *cobra.Command {
	var spec topology.GenSpec
	cmd := &cobra.Command{
		Use:   "gen",
		Short: "Print a folded-Clos topology as YAML",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			topo, err := topology.Generate(spec)
			if err != nil {
				return err
			}
			data, err := topo.MarshalYAML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(data)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Name, "name", "", "topology name (default describes the shape)")
	f.IntVar(&spec.DCs, "dcs", 1, "datacenters")
	f.IntVar(&spec.Pods, "pods", 2, "pods per datacenter")
	f.IntVar(&spec.RacksPerPod, "racks-per-pod", 2, "racks per pod")
	f.IntVar(&spec.HostsPerRack, "hosts-per-rack", 4, "hosts per rack (at most 99)")
	f.IntVar(&spec.LeavesPerPod, "leaves-per-pod", 2, "leaf switches per pod")
	f.IntVar(&spec.Spines, "spines", 2, "spine switches per datacenter")
	f.IntVar(&spec.WANs, "wans", 0, "WAN routers joining datacenters (default 2 when --dcs > 1)")
	f.StringVar(&spec.SwitchBaseAddr, "switch-base-addr", "", "give switches addresses counting up from this IPv4 address: loopbacks, a /31 per switch link, a /32 per ToR port facing a host (its gateway); must not reach host addresses")
	f.StringVar(&spec.BaseAddr, "base-addr", topology.DefaultBaseAddr, "first host address; later hosts count up, skipping .0 and .255")
	f.IntVar(&spec.ResponderPort, "responder-port", topology.DefaultResponderPort, "the fleet's TCP/UDP responder port")
	return cmd
}

func newTopoCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE...",
		Short: "Validate topology files; errors name file, line and field",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			failed := 0
			for _, file := range args {
				topo, err := topology.Load(file)
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					failed++
					continue
				}
				addrs := 0
				for _, s := range topo.Switches {
					addrs += len(s.Interfaces)
					if s.Loopback.IsValid() {
						addrs++
					}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok: %d DCs, %d pods, %d racks, %d hosts, %d switches, %d links, %d switch addresses\n",
					file, len(topo.DCs), len(topo.Pods), len(topo.Racks), len(topo.Hosts), len(topo.Switches), len(topo.Links), addrs)
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d topology files invalid", failed, len(args))
			}
			return nil
		},
	}
}

func newTopoPinglistCmd() *cobra.Command {
	var settings pinglist.Settings
	cmd := &cobra.Command{
		Use:   "pinglist FILE HOST",
		Short: "Print one host's pinglist as the controller would publish it",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			topo, err := topology.Load(args[0])
			if err != nil {
				return err
			}
			if topo.Host(args[1]) == nil {
				return fmt.Errorf("host %q is not in %s", args[1], args[0])
			}
			lists, err := pinglist.Generate(topo, settings, 1, time.Now(), bus.AgentPartition)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(lists[args[1]])
		},
	}
	addPinglistFlags(cmd, &settings)
	return cmd
}

// addPinglistFlags are shared by the server (which publishes pinglists)
// and topo pinglist (which previews them).
func addPinglistFlags(cmd *cobra.Command, s *pinglist.Settings) {
	f := cmd.Flags()
	f.DurationVar(&s.Interval, "probe-interval", 10*time.Second, "interval between probes of one peer")
	f.DurationVar(&s.Timeout, "probe-timeout", 3*time.Second, "a probe unanswered for this long is lost")
	f.StringSliceVar(&s.Protocols, "probe-protocols", wire.DefaultPeerProtocols(), "protocols every agent runs against its peers: "+strings.Join(wire.PeerProtocolNames(), ", "))
	f.IntVar(&s.InterDCRepresentatives, "inter-dc-representatives", 2, "hosts per DC that probe other DCs")
	f.IntVar(&s.Partitions, "partitions", 1, "partitions of the results stream (aggregator scale-out)")
	f.Var(&httpTargetsFlag{&s.HTTPTargets}, "http-target", "a service every agent probes with GET: NAME=URL[,status=CODE][,body=SUBSTRING] (repeatable)")
}

// httpTargetsFlag parses --http-target NAME=URL[,status=CODE][,body=TEXT].
type httpTargetsFlag struct{ targets *[]pinglist.HTTPTarget }

func (f *httpTargetsFlag) String() string {
	if f.targets == nil {
		return ""
	}
	var parts []string
	for _, t := range *f.targets {
		parts = append(parts, t.Name+"="+t.URL)
	}
	return strings.Join(parts, " ")
}

func (f *httpTargetsFlag) Type() string { return "NAME=URL" }

func (f *httpTargetsFlag) Set(v string) error {
	name, rest, ok := strings.Cut(v, "=")
	if !ok || name == "" || rest == "" {
		return fmt.Errorf("want NAME=URL[,status=CODE][,body=TEXT], got %q", v)
	}
	fields := strings.Split(rest, ",")
	u, err := url.Parse(fields[0])
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("target %s: %q is not an http(s) URL", name, fields[0])
	}
	t := pinglist.HTTPTarget{Name: name, URL: fields[0]}
	for _, kv := range fields[1:] {
		k, val, _ := strings.Cut(kv, "=")
		switch k {
		case "status":
			code, err := strconv.Atoi(val)
			if err != nil || code < 100 || code > 599 {
				return fmt.Errorf("target %s: status %q is not an HTTP status code", name, val)
			}
			t.ExpectStatus = code
		case "body":
			t.ExpectBody = val
		default:
			return fmt.Errorf("target %s: unknown option %q (want status= or body=)", name, k)
		}
	}
	*f.targets = append(*f.targets, t)
	return nil
}

// Append, Replace and GetSlice make --http-target a list in a config
// file (pflag.SliceValue).
func (f *httpTargetsFlag) Append(v string) error { return f.Set(v) }

func (f *httpTargetsFlag) Replace(vs []string) error {
	*f.targets = nil
	for _, v := range vs {
		if err := f.Set(v); err != nil {
			return err
		}
	}
	return nil
}

func (f *httpTargetsFlag) GetSlice() []string {
	var out []string
	for _, t := range *f.targets {
		out = append(out, t.Name+"="+t.URL)
	}
	return out
}
