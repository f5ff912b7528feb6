package main

import (
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshlens/meshlens/internal/alert"
	"github.com/meshlens/meshlens/internal/analyze"
	"github.com/meshlens/meshlens/internal/server"
)

func newServerCmd() *cobra.Command {
	var cfg server.Config
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the meshlens server: embedded NATS, controller, aggregator, store, API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path, _ := cmd.Flags().GetString("config"); path != "" {
				if err := applyConfigFile(cmd.Flags(), path); err != nil {
					return err
				}
			}
			logger, err := newLogger(cmd)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			cfg.Version = version
			srv, err := server.New(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return srv.Run(ctx)
		},
	}
	addServerFlags(cmd, &cfg)
	return cmd
}

func addServerFlags(cmd *cobra.Command, cfg *server.Config) {
	f := cmd.Flags()
	f.String("config", "", "YAML file of server settings: flag names as keys, dashes as underscores (http_addr: ...); flags and MESHLENS_* variables override it")
	f.StringVar(&cfg.TopologyFile, "topology", "", "topology YAML file (see meshlens topo gen); re-read when it changes")
	f.StringVar(&cfg.DataDir, "data-dir", "meshlens-data", "directory for the TSDB and the embedded NATS server's JetStream files")
	f.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:9780", "address of the HTTP API and UI")
	f.StringVar(&cfg.NATSAddr, "nats-addr", "127.0.0.1:4222", "address of the embedded NATS server")
	f.StringVar(&cfg.NATSURL, "nats-url", "", "use this external NATS JetStream cluster instead of the embedded server")
	f.StringVar(&cfg.Role, "role", "", "run one role of a scale-out deployment on --nats-url and --query-url: aggregator (holds a fair share of the --partitions through leases, publishes their sealed windows, writes counters to --remote-write-url), analyzer (merges the partitions' windows, localizes; one elected leader evaluates SLOs and alerts) or api (serves the API and UI; never alerts); none: everything in one process")
	f.StringVar(&cfg.QueryURL, "query-url", "", "with --role: the Prometheus-compatible query API of the shared TSDB, e.g. http://victoria-metrics:8428 or http://prometheus:9090")
	f.StringVar(&cfg.ServerID, "server-id", "", "with --nats-url: this server's name among those sharing the cluster, keying its own aggregator checkpoints (default: host name)")
	f.DurationVar(&cfg.Aggregate.Window, "window", 10*time.Second, "aggregation window")
	f.DurationVar(&cfg.Aggregate.Lateness, "lateness", 30*time.Second, "the longest a window waits after its end for late results before it is sealed; it is sealed sooner, as soon as every live agent has marked its data for it in")
	f.StringVar(&cfg.Alerting.ExternalURL, "external-url", "", "where users reach this server's UI, for the links in alerts (default http://HTTP-ADDR)")
	f.Float64Var(&cfg.Alerting.Faults.MinConfidence, "fault-confidence", alert.DefaultFaultConfidence, "confidence the localizer needs in an element for it to count toward an incident of its own")
	f.IntVar(&cfg.Alerting.Faults.Windows, "fault-windows", alert.DefaultFaultWindows, "consecutive windows an element must be blamed in before it opens an incident (SLOs or not)")
	f.IntVar(&cfg.Alerting.Faults.ClearWindows, "fault-clear-windows", alert.DefaultFaultClearWindows, "consecutive windows without an element that resolve its incident")
	f.StringVar(&cfg.Alerting.Faults.Severity, "fault-severity", alert.DefaultFaultSeverity, "severity label of the localizer's own alerts")
	f.Var((*offFlag)(&cfg.Evidence.Off), "evidence", "evidence on demand: while nothing is blamed but the localizer has a lead (an element its evidence points at, too thin to blame), agents whose probes may cross it probe those peers harder for a while (--evidence=false: a fixed probe rate)")
	f.Lookup("evidence").NoOptDefVal = "true"
	f.IntVar(&cfg.Evidence.Probes, "evidence-probes", analyze.DefaultEvidenceProbes, "evidence on demand: probes per interval and protocol on a pair asked for evidence")
	f.Float64Var(&cfg.Evidence.AgentRate, "evidence-agent-rate", analyze.DefaultEvidenceAgentRate, "evidence on demand: extra probes per second asked of one agent at most")
	f.Float64Var(&cfg.Evidence.FleetRate, "evidence-fleet-rate", analyze.DefaultEvidenceFleetRate, "evidence on demand: extra probes per second asked of all agents together at most")
	f.BoolVar(&cfg.Aggregate.IgnoreMarks, "ignore-agent-marks", false, "seal windows only after --lateness, ignoring the agents' marks of where their data ends (the behaviour of servers before marks; for comparison)")
	f.DurationVar(&cfg.Aggregate.Recent, "recent", time.Hour, "how long pair-level detail is kept in memory")
	f.Var((*offFlag)(&cfg.Aggregate.RollupsOnly), "pair-detail", "keep each pair's windows for --recent (the pair view, /api/v1/pairs, diagnose pair); --pair-detail=off aggregates rollups only: memory grows with hosts and rack pairs, not pairs (50,000 hosts fit), the localizer and SLOs work the same, the pair view is empty; needs --evidence=off")
	f.Lookup("pair-detail").NoOptDefVal = "true"
	f.Int64Var(&cfg.Aggregate.PairDetailMaxBytes, "pair-detail-max-bytes", server.DefaultPairDetailMaxBytes(), "memory budget of the pair detail in bytes (default: a sixteenth of the machine's or cgroup's memory, 32 MiB to 256 MiB); past it the oldest windows keep only pairs with loss, pairs looked at and a sample of the rest (0: no budget)")
	f.BoolVar(&cfg.Aggregate.RackPairRTTBuckets, "rack-pair-rtt-buckets", false, "also write each rack pair's RTT histogram (meshlens_rack_pair_rtt_seconds_bucket, _sum, _count): 16 more series per rack pair and protocol, for your own histogram_quantile between two racks; the heatmaps read the rack pairs' quantiles and rack SLOs the racks' histograms either way")
	f.BoolVar(&cfg.Aggregate.HostRTTBuckets, "host-rtt-buckets", false, "also write each host's RTT histogram (meshlens_host_rtt_seconds_bucket, _sum, _count, by direction): 16 more series per host, direction and protocol, for host-scope latency SLOs")
	f.DurationVar(&cfg.Store.Retention, "retention", 15*24*time.Hour, "how long the TSDB keeps rollups")
	f.StringVar(&cfg.RemoteWrite.URL, "remote-write-url", "", "also send every rollup to this Prometheus remote-write endpoint")
	f.StringVar(&cfg.RemoteWrite.BearerToken, "remote-write-bearer-token", "", "remote write: bearer token (prefer --remote-write-bearer-token-file or MESHLENS_REMOTE_WRITE_BEARER_TOKEN: a flag shows in ps)")
	f.StringVar(&cfg.RemoteWrite.BearerTokenFile, "remote-write-bearer-token-file", "", "remote write: file holding the bearer token, re-read at every request")
	f.StringVar(&cfg.RemoteWrite.BasicAuthUsername, "remote-write-basic-auth-username", "", "remote write: basic auth user name")
	f.StringVar(&cfg.RemoteWrite.BasicAuthPassword, "remote-write-basic-auth-password", "", "remote write: basic auth password (prefer the -file flag or the env var)")
	f.StringVar(&cfg.RemoteWrite.BasicAuthPasswordFile, "remote-write-basic-auth-password-file", "", "remote write: file holding the basic auth password, re-read at every request")
	f.StringArrayVar(&cfg.RemoteWrite.Headers, "remote-write-header", nil, `remote write: "Name: value" header sent with every request, e.g. "X-Scope-OrgID: fabric" (repeatable)`)
	f.StringArrayVar(&cfg.RemoteWrite.ExternalLabels, "remote-write-external-label", nil, "remote write: name=value label added to every series sent, so that servers writing to one receiver do not collide, e.g. server=dc1-a (repeatable)")
	f.DurationVar(&cfg.Stream.MaxAge, "stream-max-age", 24*time.Hour, "how long raw result batches stay in the JetStream stream")
	f.Int64Var(&cfg.Stream.MaxBytes, "stream-max-bytes", 0, "cap of the results stream in bytes (0: only --stream-max-age bounds it); when full, agents' new batches are refused and wait in their spools, nobody's unread data is discarded")
	f.Int64Var(&cfg.StreamAgentMaxBytes, "stream-agent-max-bytes", 8<<30, "each agent's byte quota in the results stream over --stream-max-age (at most an eighth of --stream-max-bytes); past it, its batches are refused and deleted from the stream (0: none)")
	f.IntVar(&cfg.Stream.Replicas, "stream-replicas", 1, "replicas of the results stream and KV buckets (3 on an external NATS cluster)")
	f.StringVar(&cfg.HTTP.TokensFile, "tokens-file", "", "API bearer tokens with roles (YAML); without it the API is read-only for everyone")
	f.StringVar(&cfg.HTTP.AnonymousRole, "anonymous-role", "", "role of requests without a token: none, viewer, operator, admin (default: viewer without --tokens-file, none with it)")
	f.StringVar(&cfg.HTTP.AuditLogFile, "audit-log", "", "append the audit log of every change made through the API to this file")
	f.StringSliceVar(&cfg.Alerting.SLOFiles, "slo", nil, "SLO files (meshlens YAML or OpenSLO) to evaluate continuously")
	f.StringVar(&cfg.Alerting.File, "alerting", "", "alerting file: Alertmanagers, webhooks, remediation rules")
	f.DurationVar(&cfg.Alerting.EvaluateEvery, "slo-interval", 30*time.Second, "how often SLOs are evaluated")
	addPinglistFlags(cmd, &cfg.Pinglists)
	addServerSecurityFlags(cmd, cfg)
}

func init() { extraCommands = append(extraCommands, newServerCmd) }

// offFlag is a boolean flag that turns something on, stored as its Off;
// it also takes on and off.
type offFlag bool

func (o *offFlag) Set(v string) error {
	switch v {
	case "on", "off":
		*o = v == "off"
		return nil
	}
	on, err := strconv.ParseBool(v)
	*o = offFlag(!on)
	return err
}
func (o *offFlag) String() string   { return strconv.FormatBool(!bool(*o)) }
func (o *offFlag) Type() string     { return "bool" }
func (o *offFlag) IsBoolFlag() bool { return true }
