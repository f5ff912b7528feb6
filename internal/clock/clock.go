// Package clock is meshlens's single time abstraction: the real clock for
// agents and servers, and a virtual clock the simulator advances by hand, so
// the same aggregation, localization and alerting code runs on both.
//
// It imports nothing from meshlens.
package clock

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Clock tells the time and makes timers. Implementations are safe for
// concurrent use.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives the time once d has elapsed.
	After(d time.Duration) <-chan time.Time
	// NewTicker ticks every d; Stop releases it.
	NewTicker(d time.Duration) Ticker
}

// Ticker is the part of time.Ticker that callers use.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// Real is the wall clock.
type Real struct{}

func (Real) Now() time.Time                         { return time.Now() }
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (Real) NewTicker(d time.Duration) Ticker       { return realTicker{time.NewTicker(d)} }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }

// Virtual is a clock that moves only when Advance or Set is called. Timers
// whose deadline is reached fire during that call, in deadline order.
type Virtual struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*waiter
	armed   chan struct{} // closed (and replaced) when a timer or ticker is made
}

type waiter struct {
	at     time.Time
	period time.Duration // > 0 for tickers
	ch     chan time.Time
	done   bool
}

// NewVirtual returns a virtual clock reading start.
func NewVirtual(start time.Time) *Virtual { return &Virtual{now: start} }

func (v *Virtual) Now() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.now
}

func (v *Virtual) After(d time.Duration) <-chan time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	w := &waiter{at: v.now.Add(d), ch: make(chan time.Time, 1)}
	v.addLocked(w)
	return w.ch
}

func (v *Virtual) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive ticker period")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	w := &waiter{at: v.now.Add(d), period: d, ch: make(chan time.Time, 1)}
	v.addLocked(w)
	return &virtualTicker{v: v, w: w}
}

func (v *Virtual) addLocked(w *waiter) {
	v.waiters = append(v.waiters, w)
	if v.armed != nil {
		close(v.armed)
		v.armed = nil
	}
}

// BlockUntil returns once at least n timers and tickers wait on the clock,
// or with ctx's error. A test calls it before Advance, so that the
// goroutine under test has armed its timer when the clock moves: advancing
// on a real timer instead races with that goroutine and fires ticks it may
// not have asked for yet, or more than one.
func (v *Virtual) BlockUntil(ctx context.Context, n int) error {
	for {
		v.mu.Lock()
		if len(v.waiters) >= n {
			v.mu.Unlock()
			return nil
		}
		if v.armed == nil {
			v.armed = make(chan struct{})
		}
		armed := v.armed
		v.mu.Unlock()
		select {
		case <-armed:
		case <-ctx.Done():
			return fmt.Errorf("clock: %d of %d timers armed: %w", v.pending(), n, ctx.Err())
		}
	}
}

func (v *Virtual) pending() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.waiters)
}

// Advance moves the clock forward by d, firing what falls due.
func (v *Virtual) Advance(d time.Duration) { v.Set(v.Now().Add(d)) }

// Set moves the clock to t (never backwards), firing what falls due. Like a
// real ticker, a virtual one drops ticks its reader has not taken yet.
func (v *Virtual) Set(t time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if t.Before(v.now) {
		return
	}
	for {
		sort.Slice(v.waiters, func(i, j int) bool { return v.waiters[i].at.Before(v.waiters[j].at) })
		if len(v.waiters) == 0 || v.waiters[0].at.After(t) {
			break
		}
		w := v.waiters[0]
		v.now = w.at
		select {
		case w.ch <- w.at:
		default:
		}
		if w.period > 0 && !w.done {
			w.at = w.at.Add(w.period)
		} else {
			v.waiters = v.waiters[1:]
		}
	}
	v.now = t
}

func (v *Virtual) remove(w *waiter) {
	v.mu.Lock()
	defer v.mu.Unlock()
	w.done = true
	for i, x := range v.waiters {
		if x == w {
			v.waiters = append(v.waiters[:i], v.waiters[i+1:]...)
			return
		}
	}
}

type virtualTicker struct {
	v *Virtual
	w *waiter
}

func (t *virtualTicker) C() <-chan time.Time { return t.w.ch }
func (t *virtualTicker) Stop()               { t.v.remove(t.w) }
