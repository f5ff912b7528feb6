package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/sim"
)

func newSimLiveCmd() *cobra.Command {
	var natsURL string
	var partitions int
	var loop bool
	var credsFile, drainListen, drainSecretEnv string
	var insecure bool
	cmd := &cobra.Command{
		Use:   "live SCENARIO.yaml",
		Short: "Drive a scenario's synthetic fabric in real time into a running server",
		Long: `Publishes, every probe interval, the batches every synthetic agent of the
scenario would have sent, over the real bus, so a running server (and its
UI) sees the fabric and its faults as they happen. The server must run
with the scenario's topology (write it with: meshlens sim topology FILE).

With --drain-listen it also plays the network controller: it accepts the
server's remediation webhooks (POST {"action": "drain"|"undrain",
"element", "kind"}) and routes the fabric around drained switches and
links, so remediation can be watched ending an SLO burn.`,
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
			cfg := sim.LiveConfig{JetStream: js, Partitions: partitions, Loop: loop, Logger: logger,
				OnRound: func(r int, at time.Time) { logger.Debug("round published", "round", r, "at", at) }}
			if drainListen != "" {
				if cfg.Drains, err = serveDrainHook(ctx, sc, drainListen, drainSecretEnv, insecure, logger); err != nil {
					return err
				}
			}
			return sim.RunLive(ctx, sc, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&natsURL, "nats-url", "nats://127.0.0.1:4222", "the server's bus")
	f.IntVar(&partitions, "partitions", 1, "partitions of the results stream (the server's --partitions)")
	f.BoolVar(&loop, "loop", false, "start the scenario over when it ends")
	f.StringVar(&credsFile, "creds", "", "privileged NATS credentials, when the server runs with --creds-dir")
	f.StringVar(&drainListen, "drain-listen", "", "accept remediation webhooks at http://ADDR/drain and route around what they drain")
	f.StringVar(&drainSecretEnv, "drain-secret-env", "", "environment variable holding the webhooks' HMAC secret (unsigned requests are refused)")
	f.BoolVar(&insecure, "insecure-plaintext", false, "allow --drain-listen off loopback")
	return cmd
}

// serveDrainHook serves a sim.DrainHook at http://addr/drain until ctx
// ends.
func serveDrainHook(ctx context.Context, sc *sim.Scenario, addr, secretEnv string, insecure bool, logger *slog.Logger) (*sim.DrainHook, error) {
	if err := bus.CheckListener("--drain-listen", addr, false, insecure); err != nil {
		return nil, err
	}
	var secret []byte
	if secretEnv != "" {
		if secret = []byte(os.Getenv(secretEnv)); len(secret) == 0 {
			return nil, fmt.Errorf("--drain-secret-env: $%s is empty or unset", secretEnv)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--drain-listen: %w", err)
	}
	return serveDrainHookOn(ctx, sc, ln, secret, logger)
}

// serveDrainHookOn serves a sim.DrainHook at /drain on ln until ctx ends.
func serveDrainHookOn(ctx context.Context, sc *sim.Scenario, ln net.Listener, secret []byte, logger *slog.Logger) (*sim.DrainHook, error) {
	x, err := localize.NewIndex(sc.Topology)
	if err != nil {
		ln.Close()
		return nil, err
	}
	hook := sim.NewDrainHook(x, secret)
	mux := http.NewServeMux()
	mux.Handle("/drain", hook)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("sim live: drain hook stopped", "err", err)
		}
	}()
	logger.Info("sim live: accepting remediation webhooks", "url", "http://"+ln.Addr().String()+"/drain", "signed", secret != nil)
	return hook, nil
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
