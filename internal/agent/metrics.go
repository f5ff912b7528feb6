package agent

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the agent's self-metrics.
type metrics struct {
	probes           *prometheus.CounterVec
	batchesPublished prometheus.Counter
	batchesSpooled   prometheus.Counter
	spoolDropped     prometheus.Counter
	spoolErrors      prometheus.Counter
	spoolBytes       prometheus.Gauge
	publishErrors    prometheus.Counter
	pinglistRejected prometheus.Counter
	pinglistVersion  prometheus.Gauge
	responderErrors  prometheus.Counter
	lagP99           prometheus.Gauge
	completeBefore   prometheus.Gauge
	evidencePeers    prometheus.Gauge
	evidenceRefused  prometheus.Counter
	evidenceRejected prometheus.Counter
	busConnected     prometheus.Gauge
	// hostKnown has no labels; a vector so it is absent until a server answers.
	hostKnown *prometheus.GaugeVec
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_agent_probes_total", Help: "Probes run, by protocol, outcome and peer class (the pinglist level: intra_rack, intra_dc, inter_dc; http for service targets).",
		}, []string{"protocol", "outcome", "class"}),
		batchesPublished: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_agent_batches_published_total", Help: "Batches acknowledged by JetStream.",
		}),
		batchesSpooled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_agent_batches_spooled_total", Help: "Batches written to the spool.",
		}),
		spoolDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_agent_spool_dropped_total", Help: "Unpublished batches dropped, oldest first, to keep the spool under its size limit.",
		}),
		spoolErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_agent_spool_errors_total", Help: "Spool writes, reads or removals that failed (disk full, corruption).",
		}),
		spoolBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_agent_spool_bytes", Help: "Bytes of unacknowledged batches in the spool.",
		}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_agent_publish_errors_total", Help: "Batch publishes that failed or were not acknowledged.",
		}),
		pinglistRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_agent_pinglist_rejected_total", Help: "Pinglists or fleet keys from the bus that were invalid and ignored.",
		}),
		evidencePeers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_agent_evidence_peers", Help: "Peers probed several times an interval because the server asked for evidence on demand.",
		}),
		evidenceRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_agent_evidence_peers_refused_total", Help: "Peers the server asked to probe harder that the agent left at the regular rate: over --max-extra-probes-per-second or not in the pinglist.",
		}),
		evidenceRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_agent_evidence_rejected_total", Help: "Evidence requests from the bus that were invalid and ignored.",
		}),
		busConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_agent_bus_connected", Help: "1 while the agent is connected to the bus, 0 while it is not (results wait in the spool).",
		}),
		hostKnown: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshlens_agent_host_in_topology", Help: "1 when a server confirmed this agent's --host is in the topology, 0 when it said it is not; absent until one answers.",
		}, nil),
		pinglistVersion: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_agent_pinglist_version", Help: "Version of the pinglist being probed.",
		}),
		responderErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_agent_responder_errors_total", Help: "Failures to start or run the responder.",
		}),
		lagP99: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_agent_scheduling_lag_p99_seconds", Help: "99th percentile of probe start lag in the last sealed batch.",
		}),
		completeBefore: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_agent_complete_before_seconds", Help: "The last mark sealed: every probe started before this Unix time is in a batch.",
		}),
	}
	if r == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.probes, m.batchesPublished, m.batchesSpooled, m.spoolDropped,
		m.spoolErrors, m.spoolBytes, m.publishErrors, m.pinglistRejected, m.pinglistVersion, m.responderErrors, m.lagP99, m.completeBefore,
		m.evidencePeers, m.evidenceRefused, m.evidenceRejected, m.busConnected, m.hostKnown} {
		if err := r.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("agent: metrics already registered (one agent per registry): %w", err)
			}
			return nil, fmt.Errorf("agent: register metrics: %w", err)
		}
	}
	return m, nil
}
