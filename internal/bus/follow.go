package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Follower reads one subject filter of a stream in stream order, from a
// start sequence, without acknowledgements: an ordered consumer whose
// recovery the caller can see and interrupt.
//
// nats.go's own ordered consumer recreates its server-side consumer inside
// Next, retrying for ever and ignoring Next's context; on a JetStream
// cluster that lost a node, Next then blocked for minutes (no error, no
// message, no shutdown). A Follower recreates its consumer itself, from the
// message after the last one it returned, when:
//   - the iterator fails (consumer deleted, heartbeats missing, connection
//     closed);
//   - a delivery sequence is skipped (a message lost in flight);
//   - it is stalled: nothing delivered while the stream holds a newer
//     message for the filter, at two checks in a row.
//
// Next returns within its wait, or one consumer creation (at most 10 s)
// later, so its caller keeps its own schedule (sealing, shutdown) whatever
// the cluster does. A Follower is used by one goroutine.
type Follower struct {
	cfg    FollowConfig
	js     jetstream.JetStream
	prefix string // consumer names: prefix + serial

	stream   jetstream.Stream
	cons     jetstream.Consumer
	it       jetstream.MessagesContext
	serial   int
	retryAt  time.Time     // no new consumer before this (back-off)
	backoff  time.Duration // the next back-off
	lastSeq  uint64        // stream seq of the last message returned
	consSeq  uint64        // its consumer (delivery) seq
	lastMsg  time.Time     // when a message was last returned (or the consumer made)
	checked  time.Time     // last stall check
	suspects int           // stall checks in a row that found a newer message
}

// FollowConfig says what to follow and how patiently.
type FollowConfig struct {
	Stream string
	Filter string
	// StartSeq is the first stream sequence wanted (0 or 1: the beginning).
	StartSeq uint64
	// Name prefixes the server-side consumers' names (letters, digits, '-',
	// '_'); a random suffix keeps two followers apart.
	Name string
	// Heartbeat is the idle heartbeat asked of the server, 500ms to 10s;
	// the iterator fails after two missing ones. Default 5s.
	Heartbeat time.Duration
	// StallCheck is how long nothing may arrive before the stream is asked
	// whether it holds newer messages. Default 5s.
	StallCheck time.Duration
	// OnRestart counts consumer re-creations by reason: "error", "gap",
	// "stalled".
	OnRestart func(reason string)
	Logger    *slog.Logger
}

const (
	followCreateTimeout = 10 * time.Second
	followMaxBackoff    = 5 * time.Second
	followCheckTimeout  = 2 * time.Second
	// followInactive lets the server remove a consumer we abandoned without
	// deleting it (its delete failed, or the process died).
	followInactive = 2 * time.Minute
)

// NewFollower prepares a Follower; the consumer is created by the first Next.
func NewFollower(js jetstream.JetStream, cfg FollowConfig) (*Follower, error) {
	if js == nil || cfg.Stream == "" || cfg.Filter == "" {
		return nil, errors.New("bus: a follower needs a JetStream context, a stream and a subject filter")
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	// The server's range, and under half the pull requests' 30 s expiry.
	if cfg.Heartbeat < 500*time.Millisecond || cfg.Heartbeat > 10*time.Second {
		return nil, fmt.Errorf("bus: follower heartbeat %v is outside 500ms..10s", cfg.Heartbeat)
	}
	if cfg.StallCheck <= 0 {
		cfg.StallCheck = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.OnRestart == nil {
		cfg.OnRestart = func(string) {}
	}
	if cfg.Name == "" {
		cfg.Name = "follow"
	}
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, fmt.Errorf("bus: follower name: %w", err)
	}
	f := &Follower{cfg: cfg, js: js, prefix: cfg.Name + "-" + hex.EncodeToString(r[:]) + "-"}
	if cfg.StartSeq > 1 {
		f.lastSeq = cfg.StartSeq - 1
	}
	return f, nil
}

// LastSeq is the stream sequence of the last message Next returned (StartSeq-1
// before the first).
func (f *Follower) LastSeq() uint64 { return f.lastSeq }

// ErrNoConsumer: Next could not create a consumer in time (and retries in
// the next call). Unlike an idle return, it says nothing of what the stream
// holds.
var ErrNoConsumer = errors.New("bus: no consumer yet")

// Next returns the next message of the filter in stream order with its
// metadata (parsed once, here), or nil when none arrived within wait. Its
// errors are ErrNoConsumer and ctx's.
func (f *Follower) Next(ctx context.Context, wait time.Duration) (jetstream.Msg, *jetstream.MsgMetadata, error) {
	deadline := time.Now().Add(wait)
	for {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if f.it == nil {
			if !f.open(ctx, deadline) {
				if err := ctx.Err(); err != nil {
					return nil, nil, err
				}
				return nil, nil, ErrNoConsumer
			}
		}
		nctx, cancel := context.WithDeadline(ctx, deadline)
		msg, err := f.it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) {
				f.backoff = 0
				f.checkStall(ctx)
				return nil, nil, nil
			}
			f.restart("error", err)
			continue
		}
		meta, err := msg.Metadata()
		if err != nil {
			f.restart("error", fmt.Errorf("message on %q without metadata: %w", msg.Subject(), err))
			continue
		}
		if meta.Sequence.Consumer != f.consSeq+1 {
			f.restart("gap", fmt.Errorf("delivery seq %d after %d", meta.Sequence.Consumer, f.consSeq))
			continue
		}
		f.consSeq, f.lastSeq = meta.Sequence.Consumer, meta.Sequence.Stream
		f.lastMsg, f.suspects, f.backoff = time.Now(), 0, 0
		return msg, meta, nil
	}
}

// open creates a consumer starting after the last message returned. It
// reports false when it failed or must wait out its back-off past the
// deadline (after sleeping until the deadline).
func (f *Follower) open(ctx context.Context, deadline time.Time) bool {
	if time.Now().Before(f.retryAt) {
		if f.retryAt.After(deadline) {
			sleepUntil(ctx, deadline)
			return false
		}
		if !sleepUntil(ctx, f.retryAt) {
			return false
		}
	}
	err := f.create(ctx)
	if err == nil {
		return true
	}
	if ctx.Err() != nil {
		return false
	}
	f.backOff()
	f.cfg.Logger.Warn("bus: cannot create consumer; retrying", "stream", f.cfg.Stream, "filter", f.cfg.Filter,
		"from_seq", f.lastSeq+1, "retry_in", time.Until(f.retryAt).Round(time.Millisecond), "err", err)
	if f.retryAt.Before(deadline) {
		sleepUntil(ctx, f.retryAt)
	} else {
		sleepUntil(ctx, deadline)
	}
	return false
}

func (f *Follower) create(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, followCreateTimeout)
	defer cancel()
	if f.stream == nil {
		s, err := f.js.Stream(cctx, f.cfg.Stream)
		if err != nil {
			return fmt.Errorf("bus: stream %s: %w", f.cfg.Stream, err)
		}
		f.stream = s
	}
	f.serial++
	cons, err := f.js.CreateOrUpdateConsumer(cctx, f.cfg.Stream, jetstream.ConsumerConfig{
		Name:              fmt.Sprintf("%s%d", f.prefix, f.serial),
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       f.lastSeq + 1,
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubject:     f.cfg.Filter,
		InactiveThreshold: followInactive,
		Replicas:          1,
		MemoryStorage:     true,
	})
	if err != nil {
		return fmt.Errorf("bus: consumer on %s from seq %d: %w", f.cfg.Filter, f.lastSeq+1, err)
	}
	it, err := cons.Messages(jetstream.PullHeartbeat(f.cfg.Heartbeat), jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		f.deleteConsumer(cons)
		return fmt.Errorf("bus: iterate consumer on %s: %w", f.cfg.Filter, err)
	}
	f.cons, f.it, f.consSeq = cons, it, 0
	f.lastMsg, f.checked, f.suspects = time.Now(), time.Time{}, 0
	return nil
}

// checkStall asks the stream, at most every StallCheck while idle, for its
// last message on the filter; a newer one than we have, twice in a row,
// means the consumer stopped delivering.
func (f *Follower) checkStall(ctx context.Context) {
	now := time.Now()
	if now.Sub(f.lastMsg) < f.cfg.StallCheck || now.Sub(f.checked) < f.cfg.StallCheck {
		return
	}
	f.checked = now
	cctx, cancel := context.WithTimeout(ctx, followCheckTimeout)
	last, err := f.stream.GetLastMsgForSubject(cctx, f.cfg.Filter)
	cancel()
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		f.suspects = 0
	case err != nil:
		// The stream cannot answer either; the iterator's heartbeats will
		// tell whether the consumer is gone.
		f.cfg.Logger.Debug("bus: stall check", "stream", f.cfg.Stream, "err", err)
	case last.Sequence > f.lastSeq:
		f.suspects++
		if f.suspects >= 2 {
			f.restart("stalled", fmt.Errorf("nothing delivered for %v while the stream holds seq %d", now.Sub(f.lastMsg).Round(time.Second), last.Sequence))
		}
	default:
		f.suspects = 0
	}
}

// restart drops the consumer; the next Next creates one from lastSeq+1,
// at once the first time, after a growing back-off when the new one fails
// too before delivering anything.
func (f *Follower) restart(reason string, why error) {
	f.cfg.Logger.Warn("bus: consumer restarts", "stream", f.cfg.Stream, "filter", f.cfg.Filter,
		"reason", reason, "from_seq", f.lastSeq+1, "err", why)
	f.cfg.OnRestart(reason)
	f.Stop()
	f.backOff()
}

// backOff delays the next consumer creation: 0, 250ms, 500ms, ... 5s, until
// the consumer is healthy again (a message, or an idle wait without error).
func (f *Follower) backOff() {
	f.retryAt = time.Now().Add(f.backoff)
	f.backoff = min(max(2*f.backoff, 250*time.Millisecond), followMaxBackoff)
}

// Stop ends the iteration and deletes the consumer; a later Next starts
// a new one.
func (f *Follower) Stop() {
	if f.it != nil {
		f.it.Stop()
		f.it = nil
	}
	if f.cons != nil {
		f.deleteConsumer(f.cons)
		f.cons = nil
	}
}

// deleteConsumer is best effort: an abandoned consumer goes away by itself
// after followInactive.
func (f *Follower) deleteConsumer(c jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = f.js.DeleteConsumer(ctx, f.cfg.Stream, c.CachedInfo().Name)
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
