package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

// followBus is an embedded server with the results stream, restartable on
// the same port and store.
type followBus struct {
	t     *testing.T
	dir   string
	addr  string
	emb   *Embedded
	nc    *nats.Conn
	js    jetstream.JetStream
	count int // messages published so far
}

func startFollowBus(t *testing.T) *followBus {
	t.Helper()
	b := &followBus{t: t, dir: t.TempDir(), addr: "127.0.0.1:-1"}
	b.start()
	b.addr = strings.TrimPrefix(b.emb.ClientURL(), "nats://")
	nc, err := Connect(b.emb.ClientURL(), "follow-test", nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	b.nc = nc
	if b.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if err := EnsureStreams(context.Background(), b.js, StreamSettings{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.nc.Close(); b.emb.Shutdown() })
	return b
}

func (b *followBus) start() {
	emb, err := StartEmbedded(EmbeddedConfig{Addr: b.addr, StoreDir: b.dir})
	if err != nil {
		b.t.Fatal(err)
	}
	b.emb = emb
}

// publish sends n messages to partition 0 and one to partition 1 after
// each, and returns the stream sequences of partition 0's.
func (b *followBus) publish(n int) []uint64 {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var seqs []uint64
	for range n {
		b.count++
		ack, err := b.js.Publish(ctx, ResultsSubject(0, "h1"), fmt.Appendf(nil, "m%d", b.count))
		if err != nil {
			b.t.Fatal(err)
		}
		seqs = append(seqs, ack.Sequence)
		if _, err := b.js.Publish(ctx, ResultsSubject(1, "h2"), []byte("other partition")); err != nil {
			b.t.Fatal(err)
		}
	}
	return seqs
}

// restarts counts a follower's consumer re-creations by reason.
type restarts struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *restarts) add(reason string) { r.mu.Lock(); r.n[reason]++; r.mu.Unlock() }
func (r *restarts) get(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[reason]
}

func newTestFollower(t *testing.T, js jetstream.JetStream, start uint64, hb time.Duration) (*Follower, *restarts) {
	t.Helper()
	r := &restarts{n: map[string]int{}}
	f, err := NewFollower(js, FollowConfig{
		Stream: ResultsStream, Filter: PartitionSubjects(0), StartSeq: start, Name: "test",
		Heartbeat: hb, StallCheck: 300 * time.Millisecond, OnRestart: r.add,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	return f, r
}

// readSeqs calls Next until want messages came, failing on any message out
// of order or from another partition.
func readSeqs(t *testing.T, f *Follower, want []uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < len(want); {
		msg, meta, err := f.Next(ctx, 100*time.Millisecond)
		if errors.Is(err, ErrNoConsumer) {
			continue
		}
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", i, len(want), err)
		}
		if msg == nil {
			continue
		}
		if msg.Subject() != ResultsSubject(0, "h1") || meta.Sequence.Stream != want[i] {
			t.Fatalf("message %d: got %s seq %d, want %s seq %d", i, msg.Subject(), meta.Sequence.Stream, ResultsSubject(0, "h1"), want[i])
		}
		i++
	}
}

// followerConsumer is the name of the follower's one consumer on the stream.
func followerConsumer(t *testing.T, js jetstream.JetStream) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range s.ConsumerNames(ctx).Name() {
		names = append(names, n)
	}
	if len(names) != 1 || !strings.HasPrefix(names[0], "test-") {
		t.Fatalf("consumers on the stream: %v, want the follower's one", names)
	}
	return names[0]
}

// noLeaks checks, after every other cleanup (the bus's shutdown included),
// that no goroutine outlives the test.
func noLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

func TestFollowerReadsOnePartitionInOrder(t *testing.T) {
	noLeaks(t)
	b := startFollowBus(t)
	seqs := b.publish(20)
	f, r := newTestFollower(t, b.js, seqs[5], 0)
	readSeqs(t, f, seqs[5:])
	if f.LastSeq() != seqs[19] {
		t.Errorf("LastSeq %d, want %d", f.LastSeq(), seqs[19])
	}
	// Idle: nothing more, no error, no restart.
	msg, _, err := f.Next(context.Background(), 200*time.Millisecond)
	if msg != nil || err != nil {
		t.Fatalf("idle Next: %v, %v", msg, err)
	}
	more := b.publish(3)
	readSeqs(t, f, more)
	for _, reason := range []string{"error", "gap", "stalled"} {
		if n := r.get(reason); n != 0 {
			t.Errorf("%d restarts for %s on a healthy bus", n, reason)
		}
	}
}

// TestFollowerRecovers: whatever happens to its consumer, the follower
// delivers every message once, in order, and says why it re-created it.
func TestFollowerRecovers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reasons []string // any of them
		hb      time.Duration
		harm    func(b *followBus)
	}{
		{"consumer deleted", []string{"error"}, 500 * time.Millisecond, func(b *followBus) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := b.js.DeleteConsumer(ctx, ResultsStream, followerConsumer(b.t, b.js)); err != nil {
				b.t.Fatal(err)
			}
		}},
		// A paused consumer is alive and silent: the way a stalled one
		// looks. Heartbeats are slow so that only the stall check can see it.
		{"consumer silent", []string{"stalled"}, 10 * time.Second, func(b *followBus) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := b.js.PauseConsumer(ctx, ResultsStream, followerConsumer(b.t, b.js), time.Now().Add(time.Hour)); err != nil {
				b.t.Fatal(err)
			}
		}},
		// The in-memory consumer dies with the server; the stream survives.
		// Missing heartbeats or the stall check, whichever comes first.
		{"server restarted", []string{"error", "stalled"}, 500 * time.Millisecond, func(b *followBus) {
			b.emb.Shutdown()
			b.start()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noLeaks(t)
			b := startFollowBus(t)
			f, r := newTestFollower(t, b.js, 0, tc.hb)
			readSeqs(t, f, b.publish(5))
			tc.harm(b)
			// Next neither blocks nor fails while the consumer is broken.
			for range 5 {
				if _, _, err := f.Next(context.Background(), 50*time.Millisecond); err != nil && !errors.Is(err, ErrNoConsumer) {
					t.Fatal(err)
				}
			}
			readSeqs(t, f, b.publish(10))
			seen := 0
			for _, reason := range tc.reasons {
				seen += r.get(reason)
			}
			if seen == 0 {
				t.Errorf("no restart for %v; restarts %v", tc.reasons, r.n)
			}
			if n := r.get("gap"); n != 0 {
				t.Errorf("%d restarts for a gap", n)
			}
		})
	}
}

func TestNewFollowerErrors(t *testing.T) {
	if _, err := NewFollower(nil, FollowConfig{Stream: "S", Filter: "x"}); err == nil {
		t.Error("no JetStream context: no error")
	}
	b := startFollowBus(t)
	if _, err := NewFollower(b.js, FollowConfig{Stream: "S"}); err == nil {
		t.Error("no filter: no error")
	}
	for _, hb := range []time.Duration{-time.Second, 100 * time.Millisecond, 11 * time.Second} {
		if _, err := NewFollower(b.js, FollowConfig{Stream: "S", Filter: "x", Heartbeat: hb}); err == nil {
			t.Errorf("heartbeat %v: no error", hb)
		}
	}
}
