package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/wire"
)

// armCountingClock counts the timers the scheduler arms, so a test knows
// when the scheduler has caught up with an Advance and is waiting again.
type armCountingClock struct {
	*clock.Virtual
	armed atomic.Int64
}

func (c *armCountingClock) After(d time.Duration) <-chan time.Time {
	ch := c.Virtual.After(d)
	c.armed.Add(1)
	return ch
}

// recordingProber answers at once and remembers who was probed when.
type recordingProber struct {
	clk   clock.Clock
	mu    sync.Mutex
	calls map[string][]time.Time
	n     int
}

func (p *recordingProber) Start(_ context.Context, t Target, done func(*wire.ProbeResult)) {
	p.mu.Lock()
	p.calls[t.Name] = append(p.calls[t.Name], p.clk.Now())
	p.n++
	p.mu.Unlock()
	r := newResult(t, p.clk.Now())
	r.Outcome = wire.Outcome_OUTCOME_OK
	done(r)
}

func (p *recordingProber) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func targets(prefix string, n int) []Target {
	out := make([]Target, n)
	for i := range out {
		out[i] = Target{Name: fmt.Sprintf("%s%03d", prefix, i), Protocol: wire.Protocol_PROTOCOL_TCP,
			Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 2, byte(i >> 8), byte(i)}), 7000), Timeout: time.Second}
	}
	return out
}

// expected is how many probes of ts are due in (from, to] with the
// scheduler's grid.
func expected(ts []Target, interval time.Duration, from, to time.Time) int {
	n := 0
	for _, t := range ts {
		for d := nextDue(from, phaseOf(t, interval, DefaultResolution), interval); !d.After(to); d = d.Add(interval) {
			n++
		}
	}
	return n
}

func TestSchedulerProbesEachTargetOncePerInterval(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	clk := &armCountingClock{Virtual: clock.NewVirtual(t0)}
	p := &recordingProber{clk: clk, calls: map[string][]time.Time{}}
	var reported atomic.Int64
	s := NewScheduler(SchedulerConfig{Clock: clk, Probers: map[wire.Protocol]Prober{wire.Protocol_PROTOCOL_TCP: p},
		Report: func(*wire.ProbeResult) { reported.Add(1) }})
	const interval = 10 * time.Second
	first := targets("a", 200)
	s.SetTargets(first, interval)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	testkit.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if clk.armed.Load() <= 0 {
			return errors.New("waiting for the scheduler to arm its first timer")
		}
		return nil
	})

	// step advances the clock and waits until the scheduler has fired
	// everything due and is waiting again.
	step := func(d time.Duration, want int) {
		t.Helper()
		armed := clk.armed.Load()
		clk.Advance(d)
		testkit.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
			if p.count() != want || clk.armed.Load() <= armed {
				return fmt.Errorf("waiting for %d probes at %v", want, clk.Now().Sub(t0))
			}
			return nil
		})
	}
	for i := 1; i <= 30; i++ { // three intervals in steps of one second
		step(time.Second, expected(first, interval, t0, t0.Add(time.Duration(i)*time.Second)))
	}
	for _, tgt := range first {
		if n := len(p.calls[tgt.Name]); n != 3 {
			t.Fatalf("%s probed %d times in 3 intervals", tgt.Name, n)
		}
	}
	// Spread: no one-second slice of the interval holds more than twice
	// its share.
	perSecond := map[int64]int{}
	for _, calls := range p.calls {
		perSecond[calls[0].Unix()]++
	}
	for sec, n := range perSecond {
		if n > 2*len(first)/10 {
			t.Errorf("%d of %d probes fired in second %d", n, len(first), sec-t0.Unix())
		}
	}
	// The virtual clock jumps a second per step, so a probe starts up to a
	// second after its due time, never more.
	lag := s.TakeLag()
	if lag.Samples != uint32(3*len(first)) || lag.MaxNs >= int64(time.Second) {
		t.Errorf("lag %v", lag)
	}

	// Live update: drop half, add new ones; the kept ones keep their phase.
	second := append(append([]Target(nil), first[:100]...), targets("b", 50)...)
	armed := clk.armed.Load()
	s.SetTargets(second, interval)
	testkit.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if clk.armed.Load() <= armed {
			return errors.New("waiting for the scheduler to take the update")
		}
		return nil
	})
	base, at := p.count(), clk.Now()
	for i := 1; i <= 10; i++ {
		step(time.Second, base+expected(second, interval, at, at.Add(time.Duration(i)*time.Second)))
	}
	for _, tgt := range first[100:] {
		if n := len(p.calls[tgt.Name]); n != 3 {
			t.Errorf("removed %s probed %d times, want 3", tgt.Name, n)
		}
	}
	for _, tgt := range second {
		if n := len(p.calls[tgt.Name]); n != map[bool]int{true: 4, false: 1}[tgt.Name[0] == 'a'] {
			t.Errorf("%s probed %d times", tgt.Name, n)
		}
	}
	if got := reported.Load(); got != int64(p.count()) {
		t.Errorf("reported %d of %d results", got, p.count())
	}
}

func TestSchedulerLagWhenLate(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	clk := &armCountingClock{Virtual: clock.NewVirtual(t0)}
	p := &recordingProber{clk: clk, calls: map[string][]time.Time{}}
	s := NewScheduler(SchedulerConfig{Clock: clk, Probers: map[wire.Protocol]Prober{wire.Protocol_PROTOCOL_TCP: p}})
	ts := targets("a", 50)
	s.SetTargets(ts, 10*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testkit.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if clk.armed.Load() <= 0 {
			return errors.New("waiting for the first timer")
		}
		return nil
	})
	// A starved agent: the clock jumps 25 s at once. Each target fires
	// once (missed rounds are skipped, not burst), late by up to 25 s.
	armed := clk.armed.Load()
	clk.Advance(25 * time.Second)
	testkit.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if p.count() != len(ts) || clk.armed.Load() <= armed {
			return errors.New("waiting for catch-up")
		}
		return nil
	})
	lag := s.TakeLag()
	if lag.Samples != uint32(len(ts)) || lag.MaxNs < int64(15*time.Second) || lag.P50Ns <= 0 || lag.P99Ns > lag.MaxNs {
		t.Errorf("lag %v", lag)
	}
	if again := s.TakeLag(); again.Samples != 0 {
		t.Errorf("second take: %v", again)
	}
}

func TestSchedulerNoProber(t *testing.T) {
	clk := &armCountingClock{Virtual: clock.NewVirtual(time.Unix(1_700_000_000, 0))}
	got := make(chan *wire.ProbeResult, 10)
	s := NewScheduler(SchedulerConfig{Clock: clk, Report: func(r *wire.ProbeResult) { got <- r }})
	s.SetTargets([]Target{{Name: "x", Protocol: wire.Protocol_PROTOCOL_ICMP}}, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testkit.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if clk.armed.Load() <= 0 {
			return errors.New("waiting for the first timer")
		}
		return nil
	})
	clk.Advance(time.Second)
	if r := <-got; r.Outcome != wire.Outcome_OUTCOME_ERROR {
		t.Errorf("%v", r)
	}
}

func TestNextDue(t *testing.T) {
	tests := []struct {
		now, phase, interval time.Duration
		want                 time.Duration
	}{
		{0, 0, 10, 10},
		{5, 3, 10, 13},
		{3, 3, 10, 13},
		{2, 3, 10, 3},
		{29, 9, 10, 39},
	}
	for _, tc := range tests {
		if got := nextDue(time.Unix(0, int64(tc.now)), tc.phase, tc.interval); got.UnixNano() != int64(tc.want) {
			t.Errorf("nextDue(%d, %d, %d) = %d, want %d", tc.now, tc.phase, tc.interval, got.UnixNano(), tc.want)
		}
	}
}

// heldProber keeps every probe in flight until released.
type heldProber struct {
	clk     clock.Clock
	started chan func()
}

func (p *heldProber) Start(_ context.Context, t Target, done func(*wire.ProbeResult)) {
	r := newResult(t, p.clk.Now())
	p.started <- func() { r.Outcome = wire.Outcome_OUTCOME_OK; done(r) }
}

// TestSchedulerCompleteBefore: the mark of where the data ends stays at
// the start of the oldest probe in flight, and moves to now once it has
// reported; a result reported is never after the mark read before it.
func TestSchedulerCompleteBefore(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	clk := &armCountingClock{Virtual: clock.NewVirtual(t0)}
	p := &heldProber{clk: clk, started: make(chan func(), 10)}
	var reported []*wire.ProbeResult
	var mu sync.Mutex
	s := NewScheduler(SchedulerConfig{Clock: clk, Probers: map[wire.Protocol]Prober{wire.Protocol_PROTOCOL_TCP: p},
		Report: func(r *wire.ProbeResult) { mu.Lock(); reported = append(reported, r); mu.Unlock() }})
	if got := s.CompleteBefore(); !got.Equal(t0) {
		t.Fatalf("idle: mark %v, want now %v", got, t0)
	}
	s.SetTargets(targets("t", 2), time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	testkit.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if clk.armed.Load() <= 0 {
			return errors.New("waiting for the first timer")
		}
		return nil
	})
	clk.Advance(time.Minute) // both probes start in (t0, t0+1m]
	first, second := <-p.started, <-p.started
	clk.Advance(5 * time.Second)
	mark := s.CompleteBefore()
	if !mark.After(t0) || mark.After(t0.Add(time.Minute)) {
		t.Fatalf("mark %v with two probes in flight since the first minute", mark)
	}
	first()
	if got := s.CompleteBefore(); got.Before(mark) || got.After(t0.Add(time.Minute)) {
		t.Errorf("one probe still in flight: mark %v, want between %v and its start", got, mark)
	}
	second()
	if got := s.CompleteBefore(); !got.Equal(clk.Now()) {
		t.Errorf("nothing in flight: mark %v, want now %v", got, clk.Now())
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != 2 {
		t.Fatalf("%d results reported", len(reported))
	}
	for _, r := range reported {
		if r.StartUnixNano < mark.UnixNano() {
			t.Errorf("a result started at %v, before the mark %v read while it was in flight", time.Unix(0, r.StartUnixNano), mark)
		}
	}
}

// TestCopiesSpreadOverTheInterval: the extra probes of a boosted peer
// (Target.Copy of Copies) fall evenly between its regular ones, on the
// scheduler's grid, and the regular probe keeps the phase it had without
// a boost.
func TestCopiesSpreadOverTheInterval(t *testing.T) {
	const interval = 10 * time.Second
	for _, base := range targets("peer", 20) {
		p0 := phaseOf(base, interval, DefaultResolution)
		for _, n := range []uint8{2, 4, 16} {
			for c := range n {
				tc := base
				tc.Copy, tc.Copies = c, n
				// On the scheduler's grid of slots.
				slots := int64(interval / DefaultResolution)
				want := time.Duration((int64(p0/DefaultResolution)+int64(c)*slots/int64(n))%slots) * DefaultResolution
				if got := phaseOf(tc, interval, DefaultResolution); got != want {
					t.Errorf("%s copy %d of %d: phase %v, want %v (regular %v)", base.Name, c, n, got, want, p0)
				}
			}
		}
	}
}
