package agent

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/wire"
)

// report takes one probe result into the batch being built. It is called
// from the probers' goroutines.
func (a *Agent) report(r *wire.ProbeResult) {
	// One malformed result would make the server refuse the whole batch:
	// check it alone, here, and drop only it.
	if err := wire.Validate(&wire.Batch{Agent: a.cfg.Host, Seq: 1, Results: []*wire.ProbeResult{r}}); err != nil {
		a.m.probes.WithLabelValues(r.Protocol.String(), "INVALID", a.peerClass(r)).Inc()
		a.log.Error("dropping an invalid probe result", "dst", r.Dst, "err", err)
		return
	}
	a.m.probes.WithLabelValues(r.Protocol.String(), r.Outcome.String(), a.peerClass(r)).Inc()
	a.observe(r)
	size := proto.Size(r) + 4 // field tag and length prefix
	a.mu.Lock()
	a.batch = append(a.batch, r)
	a.batchSz += size
	full := len(a.batch) >= a.cfg.BatchMaxResults || a.batchSz >= maxBatchBytes
	a.mu.Unlock()
	if full {
		a.sealBatch(false)
	}
}

// seal seals whatever the current batch holds, with the mark of where
// this agent's data ends (see sealBatch).
func (a *Agent) seal() { a.sealBatch(true) }

// sealBatch numbers the current batch, encodes it and puts it in the
// spool, from where the publisher takes it. With mark, the batch says
// where this agent's data ends (wire.Batch.complete_before_unix_nano),
// read before the batch is taken so that every result it promises is in
// this batch or an earlier one; a batch with no results goes out only to
// carry a mark past a window boundary. Seals are serialized, so batch
// seqs follow the order batches were taken in and marks never run ahead
// of a result still to be sealed.
func (a *Agent) sealBatch(mark bool) {
	a.sealMu.Lock()
	defer a.sealMu.Unlock()
	var before int64
	if mark {
		before = a.completeBefore().UnixNano()
	}
	a.mu.Lock()
	results := a.batch
	a.batch, a.batchSz = nil, 0
	sched := a.sched
	var plVersion uint64
	var window time.Duration
	if a.pl != nil {
		plVersion, window = a.pl.Version, time.Duration(a.pl.Window)
	}
	a.mu.Unlock()
	switch {
	case before < a.lastMark:
		before = 0 // the clock stepped back: say nothing until it is past the last mark
	case before > 0 && len(results) == 0 && (window <= 0 || before/int64(window) <= a.lastMark/int64(window)):
		return // no results and no boundary passed: nothing to say
	}
	if before == 0 && len(results) == 0 {
		return
	}
	lag := &wire.SchedulingLag{}
	if sched != nil {
		lag = sched.TakeLag()
	}
	a.m.lagP99.Set(time.Duration(lag.P99Ns).Seconds())
	_, err := a.spool.seal(func(epoch, seq uint64) ([]byte, error) {
		return wire.Encode(&wire.Batch{
			Agent:                  a.cfg.Host,
			Epoch:                  epoch,
			Seq:                    seq,
			CreatedUnixNano:        a.cfg.Clock.Now().UnixNano(),
			AgentVersion:           a.cfg.Version,
			PinglistVersion:        plVersion,
			SchedulingLag:          lag,
			Results:                results,
			CompleteBeforeUnixNano: before,
		})
	})
	if err != nil {
		// Cannot happen with the size checks in report; if it does, the
		// batch is lost and says so.
		a.m.spoolErrors.Inc()
		a.log.Error("cannot encode a batch; its results are lost", "results", len(results), "err", err)
		return
	}
	if before > 0 {
		a.lastMark = before
		a.m.completeBefore.Set(float64(before) / 1e9)
	}
}

// completeBefore is where this agent's data ends: its scheduler's mark
// (a runtime being replaced is stopped, every probe reported, before the
// next one starts; now when nothing probes), held back to the earliest
// lost or slow probe whose trace is not yet published (observe takes the
// hold while the scheduler still counts the probe in flight).
func (a *Agent) completeBefore() time.Time {
	a.mu.Lock()
	sched := a.sched
	a.mu.Unlock()
	mark := a.cfg.Clock.Now()
	if sched != nil {
		mark = sched.CompleteBefore()
	}
	return time.Unix(0, a.paths.heldBefore(mark.UnixNano()))
}

// sealLoop seals the current batch every BatchMaxAge, and after each
// boundary of the server's window (the pinglist's) as soon as every probe
// started before it has reported: that batch's mark tells the aggregator
// this agent's part of the window is in, so it need not wait out its
// lateness. A probe still unanswered holds the seal until its timeout,
// and a lost one until its trace is published; the wait is bounded by
// the pinglist's timeout and boundaryTraceWait.
func (a *Agent) sealLoop(ctx context.Context) {
	t := a.cfg.Clock.NewTicker(a.cfg.BatchMaxAge)
	defer t.Stop()
	for {
		var boundary <-chan time.Time
		var next time.Time
		window, timeout := a.windowAndTimeout()
		if window > 0 {
			now := a.cfg.Clock.Now()
			next = time.Unix(0, (now.UnixNano()/int64(window)+1)*int64(window))
			boundary = a.cfg.Clock.After(next.Sub(now))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			a.seal()
		case <-a.plChanged():
			// A new window width: compute the next boundary again.
		case <-boundary:
			deadline := next.Add(timeout + boundaryTraceWait)
			for a.completeBefore().Before(next) && a.cfg.Clock.Now().Before(deadline) {
				select {
				case <-ctx.Done():
					return
				case <-a.cfg.Clock.After(boundaryPoll):
				}
			}
			a.seal()
		}
	}
}

// boundaryPoll is how often the seal after a window boundary looks again
// for the probes it waits for: a few dozen looks per window at most.
// boundaryTraceWait bounds the wait for their traces past the probes'
// timeout; a seal that gives up carries the mark it has, and the next
// regular seal a later one.
const (
	boundaryPoll      = 50 * time.Millisecond
	boundaryTraceWait = 3 * time.Second
)

func (a *Agent) windowAndTimeout() (window, timeout time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pl == nil {
		return 0, 0
	}
	return time.Duration(a.pl.Window), time.Duration(a.pl.Timeout)
}

// publishLoop publishes spooled batches oldest first, one at a time, each
// until JetStream acknowledges it; only then is it removed from the spool.
// Publishing in order, one at a time, keeps a replay after an outage in
// seq order.
func (a *Agent) publishLoop(ctx context.Context, js jetstream.JetStream) {
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	for {
		seq, data, ok := a.spool.oldest()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-a.spool.notify:
				continue
			}
		}
		a.mu.Lock()
		partition := a.partition
		a.mu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, a.cfg.PublishTimeout)
		msg := &nats.Msg{Subject: bus.ResultsSubject(partition, a.cfg.Host), Data: data, Header: nats.Header{}}
		msg.Header.Set(bus.AgentClockHeader, strconv.FormatInt(a.cfg.Clock.Now().UnixNano(), 10))
		_, err := js.PublishMsg(pctx, msg, jetstream.WithMsgID(bus.BatchMsgID(a.cfg.Host, a.spool.epoch, seq)))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.m.publishErrors.Inc()
			a.log.Debug("publish", "seq", seq, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = minBackoff
		a.spool.remove(seq)
		a.m.batchesPublished.Inc()
	}
}
