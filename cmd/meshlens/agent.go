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
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/meshlens/meshlens/internal/agent"
	"github.com/meshlens/meshlens/internal/buildinfo"
	"github.com/meshlens/meshlens/internal/probe"
)

func newAgentCmd() *cobra.Command {
	var cfg agent.Config
	var metricsAddr string
	var sec agentSecurity
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the probing agent of one host",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(cmd)
			if err != nil {
				return err
			}
			if cfg.Host == "" {
				return errors.New("--host is required (this host's name in the topology)")
			}
			if cfg.SpoolDir == "" {
				cfg.SpoolDir = filepath.Join("meshlens-spool", cfg.Host)
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
				buildinfo.Collector("agent", version))
			cfg.Logger = logger.With("host", cfg.Host)
			cfg.Registerer = reg
			cfg.Version = version
			if cfg.TraceRate <= 0 {
				cfg.TraceRate = -1 // the flag's 0 is "off", the Config's "default"
			}
			if cfg.MaxExtraProbes <= 0 {
				cfg.MaxExtraProbes = -1 // likewise
			}
			if err := sec.apply(&cfg); err != nil {
				return err
			}
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			g, ctx := errgroup.WithContext(ctx)
			g.Go(func() error { return a.Run(ctx) })
			if metricsAddr != "" {
				g.Go(func() error {
					return serveMetrics(ctx, cfg.Logger, metricsAddr, reg, a.TraceHandler(), a.Live, a.Ready)
				})
			}
			return g.Wait()
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Host, "host", "", "this host's name in the topology")
	f.StringVar(&cfg.NATSURL, "nats-url", "nats://127.0.0.1:4222", "the bus (comma-separated URLs for a cluster)")
	f.StringVar(&cfg.CredsFile, "creds", "", "NATS credentials file of this agent (meshlens creds issue HOST)")
	f.StringVar(&cfg.ResponderAddr, "responder-addr", "", "where the TCP/UDP responder listens (default: this host's topology address at the fleet's responder port)")
	f.StringVar(&cfg.SpoolDir, "spool-dir", "", "directory for unacknowledged batches (default ./meshlens-spool/HOST)")
	f.Int64Var(&cfg.SpoolMaxBytes, "spool-max-bytes", 256<<20, "spool size cap; the oldest batches are dropped first")
	f.IntVar(&cfg.BatchMaxResults, "batch-max-results", 5000, "seal a batch at this many results")
	f.DurationVar(&cfg.BatchMaxAge, "batch-max-age", 5*time.Second, "seal a batch at this age")
	f.StringVar(&metricsAddr, "metrics-addr", "", "serve the agent's own metrics at http://ADDR/metrics, liveness at /healthz, readiness at /readyz and on-demand traces at /trace (meshlens trace); e.g. :9781 for a scraper on another host")
	f.Float64Var(&cfg.TraceRate, "trace-rate", agent.DefaultTraceRate, "path discovery budget: traces of lost or slow probes per second (0: no tracing)")
	f.IntVar(&cfg.TraceBurst, "trace-burst", agent.DefaultTraceBurst, "path discovery budget: traces at once after a quiet spell")
	f.IntVar(&cfg.TraceMaxTTL, "trace-max-ttl", probe.DefaultTraceMaxTTL, "highest TTL a trace sends: the fabric's diameter in hops (host to host)")
	f.IntVar(&cfg.TraceQueries, "trace-queries", probe.DefaultTraceQueries, "times a trace sends a silent TTL that a later TTL shows is no dead end, as traceroute's queries per hop: hops behind a lossy link still answer")
	f.DurationVar(&cfg.TraceFlush, "trace-flush", agent.DefaultTraceFlush, "publish traced probes this often")
	f.Float64Var(&cfg.MaxExtraProbes, "max-extra-probes-per-second", agent.DefaultMaxExtraProbes, "evidence on demand: extra probes per second this agent adds at most when the server asks it to probe some peers harder (0: never)")
	sec.addFlags(cmd)
	return cmd
}

// serveMetrics exposes a registry at /metrics, live and ready at /healthz
// and /readyz (200, or 503 with the reason), and trace if not nil at
// /trace, until ctx ends.
func serveMetrics(ctx context.Context, logger *slog.Logger, addr string, reg *prometheus.Registry, trace http.Handler, live, ready func() error) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /healthz", checkHandler(live))
	mux.Handle("GET /readyz", checkHandler(ready))
	if trace != nil {
		mux.Handle("GET /trace", trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	logger.Info("serving metrics, health and traces", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}

// checkHandler answers 200 "ok" when check passes, else 503 and why.
func checkHandler(check func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := check(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}

func init() { extraCommands = append(extraCommands, newAgentCmd) }
