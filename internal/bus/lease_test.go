package bus

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

// contender is one process campaigning for the lease over its own
// connection, so that a crash can be faked by closing that connection.
type contender struct {
	name   string
	nc     *nats.Conn
	lease  *Lease
	cancel context.CancelFunc
	done   chan struct{}
}

func startContender(t *testing.T, url, name string, ttl time.Duration) *contender {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLease(LeaseConfig{KV: kv, Key: "lease.analyzer", Holder: name, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &contender{name: name, nc: nc, lease: l, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(c.done); l.Run(ctx) }()
	t.Cleanup(c.stop)
	return c
}

func (c *contender) stop() {
	c.cancel()
	<-c.done
	c.nc.Close()
}

// overlapWatch samples the contenders' Leader() and records the most
// leaders seen at once.
func overlapWatch(cs []*contender) (max *atomic.Int32, stop func()) {
	max = &atomic.Int32{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			// One last sample after stop, so a starved sampler still sees
			// the leader the test just waited for.
			last := ctx.Err() != nil
			var n int32
			for _, c := range cs {
				if c.lease.Leader() {
					n++
				}
			}
			if n > max.Load() {
				max.Store(n)
			}
			if last {
				return
			}
			time.Sleep(2 * time.Millisecond) // sampling period, not a wait for a condition
		}
	}()
	return max, func() { cancel(); wg.Wait() }
}

func leaderOf(cs []*contender) (*contender, error) {
	var found *contender
	for _, c := range cs {
		if c.lease.Leader() {
			if found != nil {
				return nil, fmt.Errorf("two leaders: %s and %s", found.name, c.name)
			}
			found = c
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no leader")
	}
	return found, nil
}

func TestLeaseHandover(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const ttl = 2 * time.Second
	for _, tc := range []struct {
		name string
		// end takes the leader out: a clean stop or a crash (its bus
		// connection gone, no release).
		end func(c *contender)
	}{
		{"clean stop releases", func(c *contender) { c.stop() }},
		{"crashed leader is replaced", func(c *contender) { c.nc.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			emb, err := StartEmbedded(EmbeddedConfig{Addr: "127.0.0.1:-1", StoreDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer emb.Shutdown()
			setup, _ := nats.Connect(emb.ClientURL())
			js, _ := jetstream.New(setup)
			if err := EnsureStreams(context.Background(), js, StreamSettings{}); err != nil {
				t.Fatal(err)
			}
			setup.Close()

			var cs []*contender
			for i := range 3 {
				cs = append(cs, startContender(t, emb.ClientURL(), fmt.Sprintf("server-%d", i), ttl))
			}
			maxLeaders, stopWatch := overlapWatch(cs)
			var first *contender
			testkit.CheckFor(t, 15*time.Second, 10*time.Millisecond, func() error {
				first, err = leaderOf(cs)
				return err
			})
			tc.end(first)
			var rest []*contender
			for _, c := range cs {
				if c != first {
					rest = append(rest, c)
				}
			}
			// The bound for an analyzer handover: 15 s.
			var next *contender
			testkit.CheckFor(t, 15*time.Second, 10*time.Millisecond, func() error {
				next, err = leaderOf(rest)
				return err
			})
			if first.lease.Leader() {
				t.Errorf("%s still calls itself leader after %s took over", first.name, next.name)
			}
			stopWatch()
			if n := maxLeaders.Load(); n != 1 {
				t.Errorf("%d leaders at once", n)
			}
			for _, c := range cs {
				c.stop()
			}
		})
	}
}

func TestNewLeaseErrors(t *testing.T) {
	for _, tc := range []LeaseConfig{
		{Key: "k", Holder: "h"},
	} {
		if _, err := NewLease(tc); err == nil {
			t.Errorf("NewLease(%+v) accepted", tc)
		}
	}
}
