package sim

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/storage"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/analyze"
	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/wire"
)

// Epoch is where every run's virtual clock starts: fixed, so reports and
// golden files do not depend on the wall clock, and aligned to any window.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// batchDelay is how long after a round ends its batches reach the
// aggregator, and the aggregator's allowed lateness: every result of a round
// is in before its window seals.
const batchDelay = time.Second

// AggregateConfig is how a run aggregates sc: windows of its probing
// interval, and the lateness its batches arrive with. Alerting over a run
// takes its evidence delay from it (analyze.EvidenceDelay).
func AggregateConfig(sc *Scenario) aggregate.Config {
	return aggregate.Config{Window: sc.Interval, Lateness: batchDelay, Recent: 2 * sc.Interval, Locator: sc.Topology}
}

// Options of a run.
type Options struct {
	// Localizers to run side by side on the same windows; default
	// meshlens and vote.
	Localizers []string
	// Config of the localizers.
	Config localize.Config
	// Tracing, when set, replaces every scenario's tracing: the suite run
	// again with ideal or harsher path discovery.
	Tracing *Tracing
	// RollupsOnly runs the aggregator without per-pair state
	// (aggregate.Config.RollupsOnly): the localizers see the same rollups,
	// so the verdicts are the same, and a fabric of 50,000 hosts fits in
	// memory.
	RollupsOnly bool
	// Start of the run on the virtual clock; default Epoch. Tests that
	// hand the run's data to real-time components (Alertmanager) start it
	// in the recent past.
	Start time.Time
	// Appendable, if set, receives what the aggregator writes to the TSDB
	// (rollups and cumulative counters), as the server's does.
	Appendable storage.Appendable
	// Registerer, if set, receives the aggregator's and the analyzer's
	// metrics (refused path reports, dropped windows).
	Registerer prometheus.Registerer
	// Drains, if set, says which elements are drained: the fabric routes
	// around them from the next round on.
	Drains Drainer
	// Evidence tunes evidence on demand as the server's flags do: the
	// analyzer's plan is applied to the fabric from the next round on, as
	// agents apply the server's. Off runs without it.
	Evidence analyze.EvidenceConfig
	// Observe, when set, sees every verdict of every localizer as it is
	// made, with the window it is on: at is the time from the run's start.
	// It runs before the next round, so it may drive alerting and drains.
	// It must not keep suspects it modifies.
	Observe func(at time.Duration, window *aggregate.SealedWindow, v analyze.Verdict)
}

// Drainer says which elements are drained, with a version that changes
// whenever the set does. DrainHook is one.
type Drainer interface {
	Drained() (names []string, version uint64)
}

// Run simulates sc on a virtual clock through the server's data path:
// each round's batches go through the real aggregation core
// (aggregate.Aggregator.Ingest / Advance), the round's path reports,
// encoded and decoded as on the bus, and every sealed window through the
// stage-2 core (internal/analyze) to every localizer, and what they
// blamed is scored against the faults.
func Run(ctx context.Context, sc *Scenario, opts Options) (*Report, error) {
	wall := time.Now()
	if opts.Tracing != nil {
		c := *sc
		c.Tracing = *opts.Tracing
		sc = &c
	}
	if len(opts.Localizers) == 0 {
		opts.Localizers = []string{localize.NameMeshlens, localize.NameVote}
	}
	start := opts.Start
	if start.IsZero() {
		start = Epoch
	}
	x, err := localize.NewIndex(sc.Topology)
	if err != nil {
		return nil, fmt.Errorf("sim: %s: %w", sc.Name, err)
	}
	fab, err := NewFabric(sc, x, start)
	if err != nil {
		return nil, err
	}
	aggCfg := AggregateConfig(sc)
	aggCfg.RollupsOnly, aggCfg.Appendable, aggCfg.Registerer = opts.RollupsOnly, opts.Appendable, opts.Registerer
	agg, err := aggregate.New(aggCfg)
	if err != nil {
		return nil, fmt.Errorf("sim: %s: %w", sc.Name, err)
	}
	an, err := analyze.New(x, analyze.Config{Window: sc.Interval, Localizers: opts.Localizers, Localize: opts.Config, Evidence: opts.Evidence, Registerer: opts.Registerer})
	if err != nil {
		return nil, fmt.Errorf("sim: %s: %w", sc.Name, err)
	}
	timelines := map[string]*timeline{}
	for _, name := range an.Localizers() {
		timelines[name] = &timeline{}
	}
	vc := clock.NewVirtual(start)
	hosts := make([]string, len(sc.Topology.Hosts))
	for i, h := range sc.Topology.Hosts {
		hosts[i] = h.Name
	}
	rounds := fab.Rounds()
	var rejected, badTraces int
	var drainVersion, evidenceVersion uint64
	for r := 0; r < rounds; r++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("sim: %s: round %d: %w", sc.Name, r, err)
		}
		if opts.Drains != nil {
			if names, v := opts.Drains.Drained(); v != drainVersion {
				if err := fab.SetDrained(names); err != nil {
					return nil, fmt.Errorf("sim: %s: round %d: %w", sc.Name, r, err)
				}
				drainVersion = v
			}
		}
		arrival := fab.RoundStart(r + 1).Add(batchDelay)
		err := fab.Step(r, func(b *wire.Batch) error {
			if err := agg.Ingest(b, arrival); err != nil {
				rejected++ // counted by the aggregator too; the run goes on
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		// The round's path reports reach the analyzer as the server gets
		// them: encoded, from their agent's subject, decoded and checked
		// by the analyzer; one it refuses is counted there, like on the bus.
		for _, rep := range fab.PathReports() {
			data, err := rep.MarshalVT()
			if err != nil {
				return nil, fmt.Errorf("sim: %s: round %d: path report of %s: %w", sc.Name, r, rep.Agent, err)
			}
			if err := an.IngestPathData(rep.Agent, data, arrival); err != nil {
				badTraces += len(rep.Probes)
			}
		}
		vc.Set(arrival)
		sealed, err := agg.Advance(ctx, vc.Now())
		if err != nil {
			return nil, fmt.Errorf("sim: %s: round %d: %w", sc.Name, r, err)
		}
		lags := map[string]time.Duration{}
		seen := map[string]aggregate.AgentStatus{}
		for _, a := range agg.Agents() {
			lags[a.Agent] = a.SchedulingLagP99
			seen[a.Agent] = a
		}
		an.SetAgentLags(lags)
		// Agents that stopped delivering, by the server's rule.
		an.SetSilentAgents(aggregate.SilentAgents(hosts, seen, vc.Now(), sc.Interval))
		windows := map[int64]*aggregate.SealedWindow{}
		for _, sw := range sealed {
			an.IngestWindow(0, sw)
			windows[sw.Start.UnixNano()] = sw
		}
		verdicts, err := an.Advance(vc.Now())
		if err != nil {
			return nil, fmt.Errorf("sim: %s: round %d: %w", sc.Name, r, err)
		}
		if ev := an.Evidence(); ev.Version != evidenceVersion {
			fab.SetBoost(ev.Probes, ev.Agents)
			evidenceVersion = ev.Version
		}
		at := vc.Now().Sub(start)
		for _, v := range verdicts {
			timelines[v.Localizer].add(at, v.Suspects)
			if opts.Observe != nil {
				opts.Observe(at, windows[v.Start.UnixNano()], v)
			}
		}
	}
	rep := &Report{
		Scenario: sc.Name, File: sc.File, Seed: sc.Seed, Hosts: len(sc.Topology.Hosts),
		Duration: secs(sc.Duration), Interval: secs(sc.Interval), Rounds: rounds, Probes: fab.Probes(), ExtraProbes: fab.ExtraProbes(),
		RejectedBatches: rejected, RejectedTraces: badTraces, RollupsOnly: opts.RollupsOnly,
	}
	for _, name := range an.Localizers() {
		rep.Results = append(rep.Results, score(sc, x, name, timelines[name]))
	}
	rep.WallSeconds = time.Since(wall).Seconds()
	return rep, nil
}
