package sim

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/pinglist"
	"github.com/meshlens/meshlens/internal/wire"
)

// LiveConfig drives a scenario's synthetic fabric in real time into a
// running server over the real bus, as if every host ran an agent.
type LiveConfig struct {
	JetStream jetstream.JetStream
	// Partitions of the results stream, as the server's --partitions.
	Partitions int
	// Loop restarts the scenario's timeline when it ends (demos).
	Loop   bool
	Clock  clock.Clock
	Logger *slog.Logger
	// OnRound, if set, is told after each round is published.
	OnRound func(round int, at time.Time)
	// Drains, if set, says which elements are drained: the fabric routes
	// around them from the next round on.
	Drains *DrainHook
}

// RunLive publishes each round's batches when the round has passed on the
// real clock, so their probe times are in the recent past as a real
// agent's are. Faults start at their `at` counted from the live start.
func RunLive(ctx context.Context, sc *Scenario, cfg LiveConfig) error {
	if cfg.JetStream == nil {
		return fmt.Errorf("sim live: no JetStream connection")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 1
	}
	x, err := localize.NewIndex(sc.Topology)
	if err != nil {
		return fmt.Errorf("sim live: %s: %w", sc.Name, err)
	}
	// Each live run is a new incarnation of every synthetic agent, so the
	// server's de-duplication never mistakes it for a replay of an earlier
	// run against the same data.
	epoch := uint64(cfg.Clock.Now().UnixNano())
	boosts, err := watchBoosts(ctx, cfg.JetStream, cfg.Clock, cfg.Logger)
	if err != nil {
		return fmt.Errorf("sim live: %w", err)
	}
	// What the bus acknowledged, said when the run ends: what a server
	// must have counted, exactly once (bench/soak checks it).
	var rounds, sentBatches, sentResults int
	defer func() {
		cfg.Logger.Info("sim live: stopped", "rounds", rounds, "batches", sentBatches, "results", sentResults)
	}()
	for loop := 0; ; loop++ {
		start := cfg.Clock.Now().Truncate(sc.Interval).Add(sc.Interval)
		fab, err := NewFabric(sc, x, start)
		if err != nil {
			return err
		}
		cfg.Logger.Info("sim live: fabric started", "scenario", sc.Name, "hosts", len(sc.Topology.Hosts), "start", start, "faults", len(sc.Faults), "loop", loop)
		var drainVersion uint64 // of the set this fabric routes around (0: none)
		for r := 0; r < fab.Rounds(); r++ {
			// Round r's probes happen during [start_r, start_r+interval):
			// publish them once that span is over.
			if err := sleepUntil(ctx, cfg.Clock, fab.RoundStart(r+1)); err != nil {
				return nil
			}
			if cfg.Drains != nil {
				if names, v := cfg.Drains.Drained(); v != drainVersion {
					if err := fab.SetDrained(names); err != nil {
						return fmt.Errorf("sim live: %s: %w", sc.Name, err)
					}
					drainVersion = v
					cfg.Logger.Info("sim live: routing around drained elements", "drained", names, "round", r)
				}
			}
			// Evidence on demand, as agents apply it: the requests in
			// force at the round's start.
			fab.SetBoost(boosts.active(fab.RoundStart(r)))
			// Encoded now (Step reuses its batch), published after the
			// round's path reports: an agent's batch marks its data
			// complete only once the traces of its lost probes are out,
			// so that the window they join is the one they belong to.
			type pending struct {
				subj, id string
				data     []byte
				results  int
			}
			var batches []pending
			err := fab.Step(r, func(b *wire.Batch) error {
				b.Epoch = epoch + uint64(loop)
				data, err := wire.Encode(b)
				if err != nil {
					return err
				}
				batches = append(batches, pending{bus.ResultsSubject(agentPartition(sc, b.Agent, cfg.Partitions), b.Agent), bus.BatchMsgID(b.Agent, b.Epoch, b.Seq), data, len(b.Results)})
				return nil
			})
			if err != nil {
				return fmt.Errorf("sim live: %s: %w", sc.Name, err)
			}
			// Path discoveries of the round's lost and slow probes, as
			// agents doing 007-style tracing would report them, in the
			// wire codec the analyzer decodes.
			for _, rep := range fab.PathReports() {
				data, err := rep.MarshalVT()
				if err != nil {
					return fmt.Errorf("sim live: path report of %s: %w", rep.Agent, err)
				}
				if err := cfg.JetStream.Conn().Publish(bus.PathsSubject(rep.Agent), data); err != nil {
					return fmt.Errorf("sim live: path report of %s: %w", rep.Agent, err)
				}
			}
			var acks []jetstream.PubAckFuture
			for _, b := range batches {
				ack, err := cfg.JetStream.PublishAsync(b.subj, b.data, jetstream.WithMsgID(b.id))
				if err != nil {
					return fmt.Errorf("sim live: %s: publish: %w", sc.Name, err)
				}
				acks = append(acks, ack)
			}
			for i, a := range acks {
				select {
				case <-a.Ok():
					sentBatches++
					sentResults += batches[i].results
				case err := <-a.Err():
					return fmt.Errorf("sim live: %s: round %d: batch not acknowledged: %w", sc.Name, r, err)
				case <-ctx.Done():
					return nil
				}
			}
			rounds++
			if cfg.OnRound != nil {
				cfg.OnRound(r, fab.RoundStart(r+1))
			}
		}
		if !cfg.Loop {
			return nil
		}
	}
}

func sleepUntil(ctx context.Context, c clock.Clock, t time.Time) error {
	d := t.Sub(c.Now())
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.After(d):
		return nil
	}
}

// boostWatch follows every agent's evidence request in the evidence
// bucket, as each real agent follows its own.
type boostWatch struct {
	mu     sync.Mutex
	boosts map[string]*pinglist.Boost
}

// watchBoosts waits for the evidence bucket as an agent waits for its
// pinglist: a bus that is slow to answer (a cluster electing its leaders)
// or a server that has not made the bucket yet is retried every second
// until ctx ends, not taken as the end of the run.
func watchBoosts(ctx context.Context, js jetstream.JetStream, c clock.Clock, log *slog.Logger) (*boostWatch, error) {
	var w jetstream.KeyWatcher
	for attempt := 0; ; attempt++ {
		kv, err := js.KeyValue(ctx, bus.EvidenceBucket)
		if err == nil {
			w, err = kv.WatchAll(ctx)
		}
		if err == nil {
			break
		}
		if attempt%30 == 0 {
			log.Warn("sim live: the evidence bucket does not answer yet; retrying", "attempt", attempt+1, "err", err)
		}
		if sleepUntil(ctx, c, c.Now().Add(time.Second)) != nil {
			return nil, fmt.Errorf("evidence bucket: %w", err)
		}
	}
	bw := &boostWatch{boosts: map[string]*pinglist.Boost{}}
	go func() {
		defer w.Stop()
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			var b *pinglist.Boost
			if e.Operation() == jetstream.KeyValuePut {
				var err error
				if b, err = pinglist.DecodeBoost(e.Value()); err != nil {
					log.Warn("sim live: ignoring an evidence request", "key", e.Key(), "err", err)
					continue
				}
			}
			bw.mu.Lock()
			if b == nil {
				delete(bw.boosts, e.Key())
			} else {
				bw.boosts[e.Key()] = b
			}
			bw.mu.Unlock()
		}
	}()
	return bw, nil
}

// active is what the requests in force at t ask: probes per interval and
// each agent's peers.
func (bw *boostWatch) active(t time.Time) (int, map[string][]string) {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	probes, agents := 0, map[string][]string{}
	for host, b := range bw.boosts {
		if b.Active(t) && b.Host == host {
			probes = max(probes, b.Probes)
			agents[host] = b.Peers
		}
	}
	return probes, agents
}

// agentPartition is the results partition a real agent on host would
// publish to, the one its pinglist says (bus.AgentPartition of its rack).
func agentPartition(sc *Scenario, host string, n int) int {
	rack, _, _, _ := sc.Topology.Locate(host)
	return bus.AgentPartition(host, rack, n)
}
