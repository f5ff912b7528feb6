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
		a.m.probes.WithLabelValues(r.Protocol.String(), "INVALID").Inc()
		a.log.Error("dropping an invalid probe result", "dst", r.Dst, "err", err)
		return
	}
	a.m.probes.WithLabelValues(r.Protocol.String(), r.Outcome.String()).Inc()
	a.observe(r)
	size := proto.Size(r) + 4 // field tag and length prefix
	a.mu.Lock()
	a.batch = append(a.batch, r)
	a.batchSz += size
	var full []*wire.ProbeResult
	if len(a.batch) >= a.cfg.BatchMaxResults || a.batchSz >= maxBatchBytes {
		full = a.takeBatchLocked()
	}
	a.mu.Unlock()
	if full != nil {
		a.sealResults(full)
	}
}

func (a *Agent) takeBatchLocked() []*wire.ProbeResult {
	b := a.batch
	a.batch, a.batchSz = nil, 0
	return b
}

// seal seals whatever the current batch holds.
func (a *Agent) seal() {
	a.mu.Lock()
	b := a.takeBatchLocked()
	a.mu.Unlock()
	a.sealResults(b)
}

// sealResults numbers a batch, encodes it and puts it in the spool, from
// where the publisher takes it.
func (a *Agent) sealResults(results []*wire.ProbeResult) {
	if len(results) == 0 {
		return
	}
	a.mu.Lock()
	sched := a.sched
	var plVersion uint64
	if a.pl != nil {
		plVersion = a.pl.Version
	}
	a.mu.Unlock()
	lag := &wire.SchedulingLag{}
	if sched != nil {
		lag = sched.TakeLag()
	}
	a.m.lagP99.Set(time.Duration(lag.P99Ns).Seconds())
	_, err := a.spool.seal(func(epoch, seq uint64) ([]byte, error) {
		return wire.Encode(&wire.Batch{
			Agent:           a.cfg.Host,
			Epoch:           epoch,
			Seq:             seq,
			CreatedUnixNano: a.cfg.Clock.Now().UnixNano(),
			AgentVersion:    a.cfg.Version,
			PinglistVersion: plVersion,
			SchedulingLag:   lag,
			Results:         results,
		})
	})
	if err != nil {
		// Cannot happen with the size checks in report; if it does, the
		// batch is lost and says so.
		a.m.spoolErrors.Inc()
		a.log.Error("cannot encode a batch; its results are lost", "results", len(results), "err", err)
	}
}

// sealLoop seals the current batch every BatchMaxAge.
func (a *Agent) sealLoop(ctx context.Context) {
	t := a.cfg.Clock.NewTicker(a.cfg.BatchMaxAge)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			a.seal()
		}
	}
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
