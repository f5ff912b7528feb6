package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/sim"
)

func newSimLiveCmd() *cobra.Command {
	var natsURL string
	var partitions int
	var loop bool
	var credsFile string
	cmd := &cobra.Command{
		Use:   "live SCENARIO.yaml",
		Short: "Drive a scenario's synthetic fabric in real time into a running server",
		Long: `Publishes, every probe interval, the batches every synthetic agent of the
scenario would have sent, over the real bus, so a running server (and its
UI) sees the fabric and its faults as they happen. The server must run
with the scenario's topology (write it with: meshlens sim topology FILE).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			logger, err := newLogger(cmd)
			if err != nil {
				return err
			}
			sc, err := sim.Load(args[0])
			if err != nil {
				return err
			}
			var opts []nats.Option
			if credsFile != "" {
				// Synthetic agents publish as every host: the credentials
				// must be privileged (meshlens creds issue NAME --privileged).
				opts = append(opts, nats.UserCredentials(credsFile))
			}
			nc, err := bus.Connect(natsURL, "meshlens-sim-live", opts...)
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return fmt.Errorf("jetstream: %w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return sim.RunLive(ctx, sc, sim.LiveConfig{JetStream: js, Partitions: partitions, Loop: loop, Logger: logger,
				OnRound: func(r int, at time.Time) { logger.Debug("round published", "round", r, "at", at) }})
		},
	}
	f := cmd.Flags()
	f.StringVar(&natsURL, "nats-url", "nats://127.0.0.1:4222", "the server's bus")
	f.IntVar(&partitions, "partitions", 1, "partitions of the results stream (the server's --partitions)")
	f.BoolVar(&loop, "loop", false, "start the scenario over when it ends")
	f.StringVar(&credsFile, "creds", "", "privileged NATS credentials, when the server runs with --creds-dir")
	return cmd
}

func newSimTopologyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "topology SCENARIO.yaml",
		Short: "Print a scenario's topology as a topology file for meshlens server",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sc, err := sim.Load(args[0])
			if err != nil {
				return err
			}
			data, err := sc.Topology.MarshalYAML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(data)
			return err
		},
	}
}
