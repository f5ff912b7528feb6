// Package probe measures the network between hosts: probers for tcp, udp
// (signed echoes), http and icmp, the responder that answers tcp and udp
// probes, the scheduler that spreads probes over their interval, and the
// Paris tracer that follows one probe's 5-tuple hop by hop.
//
// It is the agent's lower room: it imports wire and clock, never agent,
// bus or anything of the server side.
package probe

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/meshlens/meshlens/internal/wire"
)

// Target is one thing to probe with one protocol. It is comparable, so the
// scheduler can tell unchanged targets apart across pinglist updates.
type Target struct {
	// Name is the peer's host name, or the http target's name: the
	// result's dst.
	Name     string
	Protocol wire.Protocol
	// Addr is the peer's responder (tcp, udp) or address (icmp; the port
	// is ignored). Unused for http.
	Addr netip.AddrPort
	// Timeout after which an unanswered probe is lost.
	Timeout time.Duration
	HTTP    HTTPCheck
	// Copy and Copies tell apart the extra probes of a peer whose
	// evidence was asked for (pinglist.Boost): copy k of n probes the peer
	// k/n of an interval after the regular probe (copy 0), so the interval
	// holds n evenly spread probes. Copies 0 and 1 mean one probe.
	Copy, Copies uint8
}

// HTTPCheck is what an http probe requests and expects.
type HTTPCheck struct {
	URL          string
	ExpectStatus int    // 0: any 2xx
	ExpectBody   string // substring; empty: no check
}

// Prober starts probes. Start returns quickly (it may block only while a
// concurrency limit is reached) and calls done exactly once, from any
// goroutine, with the probe's result. Implementations are safe for
// concurrent use.
type Prober interface {
	Start(ctx context.Context, t Target, done func(*wire.ProbeResult))
}

// SyncProber runs one probe to completion.
type SyncProber interface {
	Probe(ctx context.Context, t Target) *wire.ProbeResult
}

// Blocking adapts a SyncProber into a Prober: one goroutine per probe in
// flight, at most limit at once. Probes in flight wait on the network, not
// the CPU, so goroutines are cheap here; the limit bounds memory and
// sockets when many peers time out together.
type Blocking struct {
	p   SyncProber
	sem chan struct{}
	wg  sync.WaitGroup
}

// NewBlocking wraps p with a concurrency limit (default 512).
func NewBlocking(p SyncProber, limit int) *Blocking {
	if limit <= 0 {
		limit = 512
	}
	return &Blocking{p: p, sem: make(chan struct{}, limit)}
}

// Start implements Prober. When ctx ends while waiting for a slot, done
// gets an OUTCOME_ERROR result at once.
func (b *Blocking) Start(ctx context.Context, t Target, done func(*wire.ProbeResult)) {
	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		done(errorResult(t, time.Now(), ctx.Err()))
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		r := b.p.Probe(ctx, t)
		<-b.sem
		done(r)
	}()
}

// Wait blocks until every started probe has reported.
func (b *Blocking) Wait() { b.wg.Wait() }

// newResult fills what every result carries.
func newResult(t Target, start time.Time) *wire.ProbeResult {
	r := &wire.ProbeResult{
		Dst:           t.Name,
		Protocol:      t.Protocol,
		StartUnixNano: start.UnixNano(),
	}
	if t.Addr.IsValid() {
		r.DstAddr = t.Addr.Addr().String()
		if t.Protocol.NeedsResponder() {
			r.DstPort = uint32(t.Addr.Port())
		}
	}
	return r
}

func errorResult(t Target, start time.Time, err error) *wire.ProbeResult {
	r := newResult(t, start)
	r.Outcome = wire.Outcome_OUTCOME_ERROR
	r.Error = shortError(err)
	return r
}

// shortError keeps a result's error inside wire.MaxErrorLen.
func shortError(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > wire.MaxErrorLen {
		s = s[:wire.MaxErrorLen]
	}
	return s
}

// ErrNoKey is the error of udp probes while the agent has no fleet key.
var ErrNoKey = errors.New("probe: no fleet key for udp probes")
