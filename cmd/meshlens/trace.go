package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshlens/meshlens/internal/agent"
	"github.com/meshlens/meshlens/internal/topology"
	"github.com/meshlens/meshlens/internal/wire"
)

func init() { extraCommands = append(extraCommands, newTraceCmd) }

func newTraceCmd() *cobra.Command {
	var agentURL, topoFile, protocol string
	var srcPort, dstPort int
	var asJSON, noNames bool
	cmd := &cobra.Command{
		Use:   "trace SRC-HOST DST-HOST",
		Short: "Trace the path from SRC-HOST to DST-HOST now (Paris traceroute by SRC-HOST's agent), hops named from the topology",
		Long: `Asks the agent on SRC-HOST (--agent: its --metrics-addr) to run one Paris
traceroute to DST-HOST now: TCP SYNs (or UDP echoes) of one 5-tuple with
TTL 1, 2, ..., so every hop is on the path that flow takes through ECMP.
Give --src-port and --dst-port to follow a particular probe's flow. Hop
addresses are named from the topology (--topology FILE, else the server's
at --server); '*' is a hop that did not answer.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, dst := args[0], args[1]
			if agentURL == "" {
				return errors.New("trace: --agent is required: the URL of SRC-HOST's agent (its --metrics-addr), e.g. http://10.0.0.5:9464")
			}
			var topo *topology.Topology
			var err error
			switch {
			case noNames:
			case topoFile != "":
				if topo, err = topology.Load(topoFile); err != nil {
					return err
				}
			default:
				c, cerr := serverClient(cmd)
				if cerr != nil {
					return cerr
				}
				if topo, err = c.Topology(cmd.Context()); err != nil {
					return fmt.Errorf("trace: topology from the server (or give --topology FILE, or --no-names): %w", err)
				}
			}
			q := url.Values{"dst": {dst}, "protocol": {protocol}}
			if topo != nil {
				if h := topo.Host(dst); h != nil {
					q.Set("dst_addr", h.Addr.String())
				} else if _, err := netip.ParseAddr(dst); err != nil {
					return fmt.Errorf("trace: %q is no host of the topology", dst)
				}
				if topo.Host(src) == nil {
					return fmt.Errorf("trace: %q is no host of the topology", src)
				}
			}
			if srcPort != 0 {
				q.Set("src_port", strconv.Itoa(srcPort))
			}
			if dstPort != 0 {
				q.Set("dst_port", strconv.Itoa(dstPort))
			}
			rep, err := requestTrace(cmd.Context(), agentURL, q)
			if err != nil {
				return err
			}
			if rep.Src != src && src != "" {
				return fmt.Errorf("trace: the agent at %s is %q, not %q", agentURL, rep.Src, src)
			}
			if asJSON {
				return writeJSON(cmd, namedTrace{TraceReply: rep, Names: hopNames(topo, rep.Hops)})
			}
			return writeTrace(cmd.OutOrStdout(), rep, hopNames(topo, rep.Hops))
		},
	}
	addServerFlag(cmd)
	f := cmd.Flags()
	f.StringVar(&agentURL, "agent", "", "URL of SRC-HOST's agent (its --metrics-addr)")
	f.StringVar(&topoFile, "topology", "", "name hops from this topology file instead of the server's")
	f.BoolVar(&noNames, "no-names", false, "print addresses only (no topology)")
	f.StringVar(&protocol, "protocol", "tcp", "tcp (SYNs) or udp (signed echoes)")
	f.IntVar(&srcPort, "src-port", 0, "source port of the flow to follow (default: a random ephemeral port)")
	f.IntVar(&dstPort, "dst-port", 0, "destination port (default: the fleet's responder port)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

type namedTrace struct {
	agent.TraceReply
	Names []string `json:"names"`
}

func requestTrace(ctx context.Context, base string, q url.Values) (agent.TraceReply, error) {
	var rep agent.TraceReply
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/trace?"+q.Encode(), nil)
	if err != nil {
		return rep, fmt.Errorf("trace: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return rep, fmt.Errorf("trace: agent at %s: %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return rep, fmt.Errorf("trace: agent at %s: %w", base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return rep, fmt.Errorf("trace: agent at %s: %s: %s", base, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		return rep, fmt.Errorf("trace: agent at %s: %w", base, err)
	}
	return rep, nil
}

// hopName names one hop address from the topology: the host owning it.
// (At merge with the switch addresses: t.ElementByAddr, switches too.)
func hopName(t *topology.Topology, a netip.Addr) (string, bool) {
	el, peer, ok := t.ElementByAddr(a)
	switch {
	case !ok:
		return "", false
	case peer != "":
		// An interface address: the hop is the element, reached over the
		// link from peer (routers answer from the interface a probe came in on).
		return el + " (over " + peer + "->" + el + ")", true
	}
	return el, true
}

// hopNames names each hop; "" where the topology does not know it.
func hopNames(t *topology.Topology, hops []string) []string {
	out := make([]string, len(hops))
	if t == nil {
		return out
	}
	for i, h := range hops {
		if a, err := netip.ParseAddr(h); err == nil {
			out[i], _ = hopName(t, a.Unmap())
		}
	}
	return out
}

func writeTrace(w io.Writer, r agent.TraceReply, names []string) error {
	fmt.Fprintf(w, "trace %s (%s:%d) -> %s (%s:%d) over %s, %d packets\n", r.Src, r.SrcAddr, r.SrcPort, r.Dst, r.DstAddr, r.DstPort, r.Protocol, r.Packets)
	for i, h := range r.Hops {
		switch {
		case h == wire.UnknownHop:
			fmt.Fprintf(w, "%3d  *\n", i+1)
		case names[i] != "":
			fmt.Fprintf(w, "%3d  %-40s %s\n", i+1, names[i], h)
		default:
			fmt.Fprintf(w, "%3d  %-40s %s\n", i+1, "(not in the topology)", h)
		}
	}
	if r.Reached {
		_, err := fmt.Fprintln(w, "reached")
		return err
	}
	_, err := fmt.Fprintln(w, "not reached: the path goes silent after the last hop that answered")
	return err
}
