package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/meshlens/meshlens/internal/agent"
	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/server"
	"github.com/meshlens/meshlens/internal/sim"
	"github.com/meshlens/meshlens/internal/topology"
)

// demoScenario is the fabric `meshlens demo` simulates: 256 hosts in four
// pods, healthy for a minute, then a leaf–spine link starts dropping 20% of
// packets and, later, a ToR uplink adds 2 ms.
const demoScenario = `name: demo
seed: 7
topology: {generate: {dcs: 1, pods: 4, racks_per_pod: 4, hosts_per_rack: 16, leaves_per_pod: 4, spines: 4}}
probing: {interval: 10s, protocols: [tcp, udp]}
duration: 1h
background: {loss: 0.00001, latency: {base: 40us, jitter: 20us}}
faults:
  - {kind: link_loss, link: "dc1-pod2-leaf3--dc1-spine2", rate: 0.2, at: 1m}
  - {kind: link_latency, link: "dc1-pod4-rack1-tor->dc1-pod4-leaf1", add: 2ms, at: 3m}
`

// demoSLOs are the objectives the demo evaluates; the pod-2 one burns when
// the demo's lossy leaf–spine link starts dropping.
const demoSLOs = `slos:
  - name: fabric-availability
    description: probes with either end in dc1 are answered
    target: 99.9%
    window: 7d
    sli:
      probe_availability: {dc: dc1}
    alerting:
      tiers:
        - {name: fast, burn_rate: 14.4, long: 5m, short: 1m, severity: page}
  - name: pod2-availability
    description: probes to and from dc1-pod2 are answered
    target: 99.95%
    window: 7d
    sli:
      probe_availability: {pod: dc1-pod2}
    alerting:
      tiers:
        - {name: fast, burn_rate: 14.4, long: 5m, short: 1m, severity: page}
`

// demoAlerting is the demo's remediation: drain a lossy switch link or
// switch the localizer is sure of, dry-run unless --remediate (then the
// simulated fabric routes around it, as a network controller would).
const demoAlerting = `remediation:
  execute: %t
  max_actions_per_hour: 3
  max_layer_share: 25%%
  rules:
    - name: drain-lossy-fabric
      kinds: [link, device]
      min_confidence: 0.9
      hold_down: 10m
      webhook: {url: "%s"}
`

func newDemoCmd() *cobra.Command {
	var dataDir, httpAddr, natsAddr, mode string
	var remediate bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run meshlens for real on this machine: server, UI and a probed fabric with a fault",
		Long: `Starts the server on its embedded defaults and feeds it a fabric:

  --mode sim   (default) 256 simulated hosts, driven in real time over the
               real bus; after a minute a leaf-spine link drops 20% of
               packets, after three a ToR uplink adds 2 ms.
  --mode real  a real agent for every host of a 16-host fabric, each bound
               to its own loopback address (127.1.0.x), probing the others
               over TCP and UDP for real.

Remediation runs dry: the incidents page shows what meshlens would drain.
With --remediate (sim mode) it drains for real: the simulated fabric then
routes around the blamed link, and the burn ends.

It prints the UI's URL and runs until interrupted. Without --data-dir its
data goes to a new temporary directory, removed when it stops; with
--data-dir it stays there, and the demo says so when it stops.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			logger, err := newLogger(cmd)
			if err != nil {
				return err
			}
			temporary := dataDir == ""
			if temporary {
				if dataDir, err = os.MkdirTemp("", "meshlens-demo-"); err != nil {
					return err
				}
			}
			// Everything else the demo starts runs in this process and
			// ends with it: its data directory is all it can leave.
			defer func() { err = errors.Join(err, leaveDemoData(cmd.OutOrStdout(), dataDir, temporary)) }()
			var topo *topology.Topology
			var sc *sim.Scenario
			switch mode {
			case "sim":
				if sc, err = sim.Parse("demo-scenario.yaml", []byte(demoScenario), nil); err != nil {
					return err
				}
				topo = sc.Topology
			case "real":
				if topo, err = topology.Generate(topology.GenSpec{DCs: 1, Pods: 2, RacksPerPod: 2, HostsPerRack: 4, LeavesPerPod: 2, Spines: 2}); err != nil {
					return err
				}
			default:
				return fmt.Errorf("--mode %q: want sim or real", mode)
			}
			if err := os.MkdirAll(dataDir, 0o750); err != nil {
				return err
			}
			sloFile := filepath.Join(dataDir, "slos.yaml")
			if err := os.WriteFile(sloFile, []byte(demoSLOs), 0o644); err != nil {
				return err
			}
			// The drain hook listens before the server starts, so that the
			// remediation rule can name it.
			var hookLn net.Listener
			hookURL := "http://127.0.0.1:9/drain" // dry-run only: never called
			if mode == "sim" {
				if hookLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
					return err
				}
				hookURL = "http://" + hookLn.Addr().String() + "/drain"
			} else if remediate {
				return errors.New("--remediate needs --mode sim: real agents have no network to drain")
			}
			alertingFile := filepath.Join(dataDir, "alerting.yaml")
			if err := os.WriteFile(alertingFile, fmt.Appendf(nil, demoAlerting, remediate, hookURL), 0o644); err != nil {
				return err
			}
			topoFile := filepath.Join(dataDir, "topology.yaml")
			data, err := topo.MarshalYAML()
			if err != nil {
				return err
			}
			if err := os.WriteFile(topoFile, data, 0o644); err != nil {
				return err
			}
			srv, err := server.New(server.Config{
				TopologyFile: topoFile, DataDir: filepath.Join(dataDir, "server"),
				HTTPAddr: httpAddr, NATSAddr: natsAddr, Logger: logger, Version: version,
				Alerting: server.AlertingConfig{SLOFiles: []string{sloFile}, File: alertingFile, EvaluateEvery: 10 * time.Second},
				// The server's default budget for pair detail, as `meshlens
				// server` has it.
				Aggregate: aggregate.Config{PairDetailMaxBytes: server.DefaultPairDetailMaxBytes()},
			})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			g, ctx := errgroup.WithContext(ctx)
			g.Go(func() error { return srv.Run(ctx) })
			if err := waitReady(ctx, "http://"+httpAddr+"/readyz"); err != nil {
				stop()
				return errors.Join(err, g.Wait())
			}
			switch mode {
			case "sim":
				hook, err := serveDrainHookOn(ctx, sc, hookLn, nil, logger)
				if err != nil {
					stop()
					return errors.Join(err, g.Wait())
				}
				g.Go(func() error { return runDemoSim(ctx, srv.NATSURL(), sc, hook, logger) })
			case "real":
				for _, h := range topo.Hosts {
					a, err := agent.New(agent.Config{Host: h.Name, NATSURL: srv.NATSURL(), SpoolDir: filepath.Join(dataDir, "spool", h.Name),
						Version: version, Logger: logger.With("agent", h.Name)})
					if err != nil {
						stop()
						return errors.Join(err, g.Wait())
					}
					g.Go(func() error { return a.Run(ctx) })
				}
			}
			fmt.Fprint(cmd.OutOrStdout(), demoBanner(mode, len(topo.Hosts), sc, dataDir, temporary, httpAddr, srv.NATSURL(), remediate))
			return g.Wait()
		},
	}
	f := cmd.Flags()
	f.StringVar(&mode, "mode", "sim", "sim: a simulated 256-host fabric with faults; real: real agents on loopback")
	f.StringVar(&dataDir, "data-dir", "", "where the demo keeps its data (default: a new temporary directory)")
	f.StringVar(&httpAddr, "http-addr", "127.0.0.1:9780", "address of the UI and API")
	f.StringVar(&natsAddr, "nats-addr", "127.0.0.1:4222", "address of the embedded NATS server")
	f.BoolVar(&remediate, "remediate", false, "let remediation drain what meshlens blames (sim mode); default dry-run")
	return cmd
}

func runDemoSim(ctx context.Context, natsURL string, sc *sim.Scenario, drains *sim.DrainHook, logger *slog.Logger) error {
	nc, err := bus.Connect(natsURL, "meshlens-demo-sim")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	return sim.RunLive(ctx, sc, sim.LiveConfig{JetStream: js, Loop: true, Drains: drains, Logger: logger})
}

// waitReady polls the server's readiness endpoint.
func waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		if err := getOK(ctx, url); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("server not ready after a minute: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func init() { extraCommands = append(extraCommands, newDemoCmd) }

// demoBanner says what runs and how to look at it: every command as it
// can be pasted on a machine with Go and curl only, the binary named as it
// was started (`make demo` runs ./bin/meshlens, which is not on the PATH).
func demoBanner(mode string, hosts int, sc *sim.Scenario, dataDir string, temporary bool, httpAddr, natsURL string, remediate bool) string {
	self := os.Args[0]
	kept := "kept after Ctrl-C"
	if temporary {
		kept = "removed on Ctrl-C"
	}
	faults := "none: real agents probe each other on loopback"
	if sc != nil {
		var fs []string
		for _, f := range sc.Faults {
			fs = append(fs, fmt.Sprintf("%s %s from %v", f.Kind, f.Element, f.At))
		}
		faults = strings.Join(fs, "; ")
	}
	return fmt.Sprintf(`
meshlens demo is running (%s mode, %d hosts; data in %s, %s)
Faults: %s. Data shows within a minute.

  UI:          http://%s/
  PromQL:      curl -s http://%s/api/v1/query --data-urlencode 'query=topk(5, meshlens_rack_pair_loss_ratio)'
  Suspects:    curl -s http://%s/api/v1/suspects
  Incidents:   %s incidents list --server http://%s
  Diagnose:    %s diagnose pair dc1-pod2-rack1-h01 dc1-pod1-rack1-h01 --server http://%s
  NATS:        %s
  Remediation: %s

Press Ctrl-C to stop.
`, mode, hosts, dataDir, kept, faults, httpAddr, httpAddr, httpAddr, self, httpAddr, self, httpAddr, natsURL, remediationNote(remediate))
}

// leaveDemoData removes the demo's data directory when the demo made it,
// and says what it leaves behind either way.
func leaveDemoData(out io.Writer, dataDir string, temporary bool) error {
	if !temporary {
		fmt.Fprintf(out, "\nmeshlens demo stopped. Its data stays in %s (topology, SLOs, TSDB, state): run it again with --data-dir %s to go on from it, or delete the directory. Nothing else is left running.\n", dataDir, dataDir)
		return nil
	}
	if err := os.RemoveAll(dataDir); err != nil {
		fmt.Fprintf(out, "\nmeshlens demo stopped, but could not remove its data in %s: delete it by hand.\n", dataDir)
		return fmt.Errorf("demo: remove its data: %w", err)
	}
	fmt.Fprintf(out, "\nmeshlens demo stopped and removed its data (%s). Nothing is left behind.\n", dataDir)
	return nil
}

func remediationNote(execute bool) string {
	if execute {
		return "on: blamed fabric links and switches are drained, and the fabric routes around them"
	}
	return "dry-run: the incident page shows what would be drained (run with --remediate to drain)"
}
