package probe

import (
	"container/heap"
	"context"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/wire"
)

// DefaultResolution is the scheduler's default slot size.
const DefaultResolution = 100 * time.Millisecond

// SchedulerConfig configures a Scheduler.
type SchedulerConfig struct {
	Clock clock.Clock
	// Probers by protocol; targets of a protocol without a prober are
	// reported as OUTCOME_ERROR.
	Probers map[wire.Protocol]Prober
	// Report receives every result, from any goroutine. It must not block
	// for long.
	Report     func(*wire.ProbeResult)
	Registerer prometheus.Registerer
	// Resolution is the grid probes are placed on within the interval
	// (default DefaultResolution): targets that share a slot start in one
	// wakeup. Small bursts cost far less CPU than the same probes one by
	// one (one wakeup of the agent, of the peer's responder and of the
	// reply reader per burst instead of per probe: 2,500 peers × tcp+udp
	// every 10 s drop from ~220 to ~90 µs of CPU per probe), while a burst
	// stays a few dozen packets. RTTs are unaffected: they come from
	// kernel timestamps, not from when the prober got around to reading.
	Resolution time.Duration
}

// Scheduler probes each target once per interval, each at its own stable
// phase within the interval (a hash of the target), so probes spread
// evenly instead of bursting at t=0, and a restarted agent keeps its
// phases. One goroutine drives a min-heap of due times: no goroutine or
// timer per target, so 5,000 targets cost 5,000 heap entries.
//
// It measures its own lag, how late each probe starts against its due
// time: a CPU-starved agent shows up there, not as network latency.
type Scheduler struct {
	cfg     SchedulerConfig
	updates chan struct{}
	lagHist prometheus.Histogram
	extra   prometheus.Counter

	mu       sync.Mutex
	targets  []Target
	interval time.Duration
	lag      lagRecorder
	inflight sync.WaitGroup

	// started counts the probes in flight by start time (Unix ns, read
	// before the prober reads its own): CompleteBefore's minimum.
	startMu sync.Mutex
	started map[int64]int
}

// NewScheduler returns a scheduler with no targets.
func NewScheduler(cfg SchedulerConfig) *Scheduler {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Report == nil {
		cfg.Report = func(*wire.ProbeResult) {}
	}
	if cfg.Resolution <= 0 {
		cfg.Resolution = DefaultResolution
	}
	return &Scheduler{
		cfg:     cfg,
		updates: make(chan struct{}, 1),
		started: make(map[int64]int),
		lagHist: register(cfg.Registerer, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshlens_probe_scheduling_lag_seconds",
			Help:    "How late probes started against their scheduled time.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9), // 100µs .. 6.5s
		})),
		extra: register(cfg.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_probe_extra_total",
			Help: "Probes started beyond one per peer, protocol and interval, because the server asked for evidence on demand.",
		})),
	}
}

// SetTargets replaces what is probed, live. Targets present before and
// after keep their schedule. Safe for concurrent use.
func (s *Scheduler) SetTargets(targets []Target, interval time.Duration) {
	s.mu.Lock()
	s.targets = slices.Clone(targets)
	s.interval = interval
	s.mu.Unlock()
	select {
	case s.updates <- struct{}{}:
	default:
	}
}

type slot struct {
	t     Target
	phase time.Duration
	due   time.Time
	index int
}

type slotHeap []*slot

func (h slotHeap) Len() int           { return len(h) }
func (h slotHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h slotHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *slotHeap) Push(x any)        { s := x.(*slot); s.index = len(*h); *h = append(*h, s) }
func (h *slotHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return s
}

// phaseOf is a target's stable offset within the interval, a multiple of
// resolution.
func phaseOf(t Target, interval, resolution time.Duration) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(t.Name))
	h.Write([]byte{byte(t.Protocol)})
	b, _ := t.Addr.MarshalBinary()
	h.Write(b)
	h.Write([]byte(t.HTTP.URL))
	slots := max(1, uint64(interval/resolution))
	phase := h.Sum64() % slots
	if t.Copies > 1 && t.Copy > 0 {
		phase = (phase + uint64(t.Copy)*slots/uint64(t.Copies)) % slots
	}
	return time.Duration(phase) * (interval / time.Duration(slots))
}

// nextDue is the first time after now at phase within the interval grid
// anchored at the Unix epoch.
func nextDue(now time.Time, phase, interval time.Duration) time.Time {
	n := now.UnixNano() - int64(phase)
	k := n/int64(interval) + 1
	if n < 0 {
		k = n / int64(interval)
	}
	return time.Unix(0, k*int64(interval)+int64(phase))
}

// Run probes until ctx ends, then waits for the probes in flight to report.
func (s *Scheduler) Run(ctx context.Context) error {
	defer s.inflight.Wait()
	var (
		h        slotHeap
		interval time.Duration
	)
	rebuild := func(now time.Time) {
		s.mu.Lock()
		targets, newInterval := s.targets, s.interval
		s.mu.Unlock()
		old := make(map[Target]*slot, len(h))
		for _, sl := range h {
			old[sl.t] = sl
		}
		h = h[:0]
		if newInterval <= 0 {
			interval = 0
			return
		}
		for _, t := range targets {
			sl := old[t]
			if sl == nil || newInterval != interval {
				sl = &slot{t: t, phase: phaseOf(t, newInterval, s.cfg.Resolution)}
				sl.due = nextDue(now, sl.phase, newInterval)
			}
			delete(old, t)
			heap.Push(&h, sl)
		}
		interval = newInterval
	}
	for {
		var wake <-chan time.Time
		if len(h) > 0 {
			wait := h[0].due.Sub(s.cfg.Clock.Now())
			if wait <= 0 && ctx.Err() == nil { // (fireDue does nothing once ctx ends)
				s.fireDue(ctx, &h, interval)
				continue
			}
			wake = s.cfg.Clock.After(wait)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.updates:
			rebuild(s.cfg.Clock.Now())
		case <-wake:
			s.fireDue(ctx, &h, interval)
		}
	}
}

// fireDue starts every probe that is due.
func (s *Scheduler) fireDue(ctx context.Context, h *slotHeap, interval time.Duration) {
	for len(*h) > 0 && ctx.Err() == nil {
		now := s.cfg.Clock.Now()
		sl := (*h)[0]
		if sl.due.After(now) {
			return
		}
		lag := now.Sub(sl.due)
		s.lag.record(lag)
		s.lagHist.Observe(lag.Seconds())
		s.start(ctx, sl.t)
		if sl.t.Copy > 0 {
			s.extra.Inc()
		}
		sl.due = sl.due.Add(interval)
		if !sl.due.After(now) {
			// More than a whole interval late: skip the missed rounds
			// rather than fire a burst; the lag already says why.
			sl.due = nextDue(now, sl.phase, interval)
		}
		heap.Fix(h, 0)
	}
}

func (s *Scheduler) start(ctx context.Context, t Target) {
	at := s.begin()
	p := s.cfg.Probers[t.Protocol]
	if p == nil {
		r := newResult(t, s.cfg.Clock.Now())
		r.Outcome, r.Error = wire.Outcome_OUTCOME_ERROR, "no prober for "+t.Protocol.String()
		s.cfg.Report(r)
		s.end(at)
		return
	}
	s.inflight.Add(1)
	p.Start(ctx, t, func(r *wire.ProbeResult) {
		s.cfg.Report(r)
		s.end(at)
		s.inflight.Done()
	})
}

// begin notes a probe in flight from now, before its prober reads the
// clock for the result's start.
func (s *Scheduler) begin() int64 {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	at := s.cfg.Clock.Now().UnixNano()
	s.started[at]++
	return at
}

// end notes that the probe begun at at has been reported.
func (s *Scheduler) end(at int64) {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if s.started[at]--; s.started[at] <= 0 {
		delete(s.started, at)
	}
}

// CompleteBefore is where this scheduler's data ends: every probe it
// started before the time returned has been reported (Report returned),
// and every probe it starts later starts at or after it. A batcher reads
// it before taking what was reported, so its batch holds every result
// the mark promises. Probes in flight are few (those of the last
// timeout), so the scan is short.
func (s *Scheduler) CompleteBefore() time.Time {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	mark := s.cfg.Clock.Now().UnixNano()
	for at := range s.started {
		mark = min(mark, at)
	}
	return time.Unix(0, mark)
}

// TakeLag returns the lag of the probes started since the previous call
// and starts a new period: the batcher calls it when it seals a batch.
func (s *Scheduler) TakeLag() *wire.SchedulingLag { return s.lag.take() }

// lagRecorder keeps a uniform sample of the lags of one period (reservoir
// sampling, bounded memory) and their exact maximum.
type lagRecorder struct {
	mu      sync.Mutex
	samples []time.Duration
	seen    int
	max     time.Duration
}

const lagReservoir = 4096

func (l *lagRecorder) record(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen++
	if d > l.max {
		l.max = d
	}
	if len(l.samples) < lagReservoir {
		l.samples = append(l.samples, d)
		return
	}
	if i := rand.IntN(l.seen); i < lagReservoir {
		l.samples[i] = d
	}
}

func (l *lagRecorder) take() *wire.SchedulingLag {
	l.mu.Lock()
	samples, seen, maxLag := l.samples, l.seen, l.max
	l.samples, l.seen, l.max = make([]time.Duration, 0, len(samples)), 0, 0
	l.mu.Unlock()
	out := &wire.SchedulingLag{Samples: uint32(min(seen, 1<<32-1)), MaxNs: int64(maxLag)}
	if len(samples) == 0 {
		return out
	}
	slices.Sort(samples)
	out.P50Ns = int64(samples[(len(samples)-1)*50/100])
	out.P99Ns = int64(samples[(len(samples)-1)*99/100])
	return out
}
