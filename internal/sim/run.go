package sim

import (
	"context"
	"fmt"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/wire"
	"google.golang.org/protobuf/proto"
)

// Epoch is where every run's virtual clock starts: fixed, so reports and
// golden files do not depend on the wall clock, and aligned to any window.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// batchDelay is how long after a round ends its batches reach the
// aggregator, and the aggregator's allowed lateness: every result of a round
// is in before its window seals.
const batchDelay = time.Second

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
	// Observe, when set, sees every window's verdict of every localizer as
	// it is made: at is the time from the run's start. For progress
	// displays and debugging; it must not keep suspects it modifies.
	Observe func(at time.Duration, localizer string, window *aggregate.SealedWindow, suspects []localize.Suspect)
}

// Run simulates sc on a virtual clock: each round's batches go through the
// real aggregation core (aggregate.Aggregator.Ingest / Advance), each
// sealed window with the round's path discoveries to every localizer, and
// what they blamed is scored against the faults.
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
	x, err := localize.NewIndex(sc.Topology)
	if err != nil {
		return nil, fmt.Errorf("sim: %s: %w", sc.Name, err)
	}
	fab, err := NewFabric(sc, x, Epoch)
	if err != nil {
		return nil, err
	}
	agg, err := aggregate.New(aggregate.Config{
		Window:      sc.Interval,
		Lateness:    batchDelay,
		Recent:      2 * sc.Interval,
		Locator:     sc.Topology,
		RollupsOnly: opts.RollupsOnly,
	})
	if err != nil {
		return nil, fmt.Errorf("sim: %s: %w", sc.Name, err)
	}
	var lzs []localize.Localizer
	var timelines []*timeline
	for _, name := range opts.Localizers {
		lz, err := localize.New(name, x, opts.Config)
		if err != nil {
			return nil, fmt.Errorf("sim: %s: %w", sc.Name, err)
		}
		lzs = append(lzs, lz)
		timelines = append(timelines, &timeline{})
	}
	vc := clock.NewVirtual(Epoch)
	rounds := fab.Rounds()
	var rejected, badTraces int
	for r := 0; r < rounds; r++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("sim: %s: round %d: %w", sc.Name, r, err)
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
		vc.Set(arrival)
		sealed, err := agg.Advance(ctx, vc.Now())
		if err != nil {
			return nil, fmt.Errorf("sim: %s: round %d: %w", sc.Name, r, err)
		}
		lags := map[string]time.Duration{}
		for _, a := range agg.Agents() {
			lags[a.Agent] = a.SchedulingLagP99
		}
		for _, sw := range sealed {
			w := &localize.Window{Sealed: sw, AgentLag: lags}
			// Windows are rounds, so the round just stepped is the window
			// just sealed; an older window (none in a normal run) has no
			// traces left.
			if sw.Start.Equal(fab.RoundStart(r)) {
				w.Traces = ResolveReports(x, fab.PathReports(), &badTraces)
			}
			at := vc.Now().Sub(Epoch)
			for i, lz := range lzs {
				sus, err := lz.Localize(w)
				if err != nil {
					return nil, fmt.Errorf("sim: %s: window %v: %s: %w", sc.Name, sw.Start, lz.Name(), err)
				}
				timelines[i].add(at, sus)
				if opts.Observe != nil {
					opts.Observe(at, lz.Name(), sw, sus)
				}
			}
		}
	}
	rep := &Report{
		Scenario: sc.Name, File: sc.File, Seed: sc.Seed, Hosts: len(sc.Topology.Hosts),
		Duration: secs(sc.Duration), Interval: secs(sc.Interval), Rounds: rounds, Probes: fab.Probes(),
		RejectedBatches: rejected, RejectedTraces: badTraces, RollupsOnly: opts.RollupsOnly,
	}
	for i, lz := range lzs {
		rep.Results = append(rep.Results, score(sc, x, lz.Name(), timelines[i]))
	}
	rep.WallSeconds = time.Since(wall).Seconds()
	return rep, nil
}

// ResolveReports is what the analyzer does with the agents' path reports:
// each traced probe through the wire codec and localize.ResolveTrace, the
// one conversion, so the localizer sees exactly what a server would.
// Refused ones are counted in bad.
func ResolveReports(x *localize.Index, reps []*wire.PathReport, bad *int) []localize.Trace {
	var out []localize.Trace
	for _, rep := range reps {
		data, err := proto.Marshal(rep)
		var got *wire.PathReport
		if err == nil {
			got, err = wire.DecodePathReport(data) // the server's decoder, with its limits
		}
		if err != nil {
			*bad += len(rep.Probes)
			continue
		}
		for _, p := range got.Probes {
			t, err := x.ResolveTrace(got.Agent, p)
			if err != nil {
				*bad++
				continue
			}
			out = append(out, t)
		}
	}
	return out
}
