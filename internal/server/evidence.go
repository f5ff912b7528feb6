package server

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/analyze"
	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/pinglist"
)

// evidencePublisher writes the analyzer's evidence plan to the evidence
// bucket, one pinglist.Boost per agent asked, like the controller writes
// pinglists: a key is written when its peers change or half its lifetime
// has passed (so an agent's request lapses on its own, Lifetime after the
// server stopped renewing it), and deleted when the agent is no longer
// asked. Only the analyzer (the lease holder) publishes.
type evidencePublisher struct {
	js       jetstream.JetStream
	lifetime time.Duration
	// published: what each key holds, as this server last wrote or found
	// it; nil until the bucket was listed once (a new leader deletes what
	// the previous one left).
	published map[string]*pinglist.Boost
	writes    *prometheus.CounterVec
}

func newEvidencePublisher(js jetstream.JetStream, window time.Duration, reg prometheus.Registerer) *evidencePublisher {
	p := &evidencePublisher{js: js, lifetime: time.Duration(analyze.DefaultEvidenceHold+1) * window,
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_evidence_requests_published_total",
			Help: "Writes to the evidence bucket, by op: put (an agent asked, or renewed), delete (withdrawn).",
		}, []string{"op"})}
	p.writes.WithLabelValues("put")
	p.writes.WithLabelValues("delete")
	reg.MustRegister(p.writes)
	return p
}

// sync makes the bucket hold plan as of now.
func (p *evidencePublisher) sync(ctx context.Context, plan analyze.Evidence, now time.Time) error {
	kv, err := p.js.KeyValue(ctx, bus.EvidenceBucket)
	if err != nil {
		return fmt.Errorf("evidence bucket: %w", err)
	}
	if p.published == nil {
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return fmt.Errorf("evidence bucket: %w", err)
		}
		found := map[string]*pinglist.Boost{}
		for k := range keys.Keys() {
			found[k] = &pinglist.Boost{Host: k}
		}
		p.published = found
	}
	var elements []string
	for _, r := range plan.Requests {
		if len(elements) < 16 {
			elements = append(elements, r.Element)
		}
	}
	for agent, peers := range plan.Agents {
		old := p.published[agent]
		if old != nil && old.Probes == plan.Probes && slices.Equal(old.Peers, peers) && old.Until.Sub(now) > p.lifetime/2 {
			continue
		}
		b := &pinglist.Boost{Host: agent, Version: plan.Version, Until: now.Add(p.lifetime).UTC(), Probes: plan.Probes, Peers: peers, Elements: elements}
		data, err := pinglist.EncodeBoost(b)
		if err != nil {
			return err
		}
		if _, err := kv.Put(ctx, agent, data); err != nil {
			return fmt.Errorf("evidence request of %s: %w", agent, err)
		}
		p.published[agent] = b
		p.writes.WithLabelValues("put").Inc()
	}
	for agent := range p.published {
		if _, ok := plan.Agents[agent]; ok {
			continue
		}
		if err := kv.Delete(ctx, agent); err != nil && !bus.IsNotFound(err) {
			return fmt.Errorf("evidence request of %s: %w", agent, err)
		}
		delete(p.published, agent)
		p.writes.WithLabelValues("delete").Inc()
	}
	return nil
}
