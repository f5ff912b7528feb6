package agent

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/pinglist"
	"github.com/meshlens/meshlens/internal/probe"
	"github.com/meshlens/meshlens/internal/testkit"
)

// TestEvidenceRequests: an evidence request in the bucket makes the agent
// probe the listed peers of its pinglist several times an interval, within
// its own budget whatever is asked; deleting it or letting it lapse
// restores the regular rate, and a request for another host is refused.
func TestEvidenceRequests(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ev, err := f.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.EvidenceBucket})
	if err != nil {
		t.Fatal(err)
	}
	port := testkit.FixedPort(t, "127.0.1.41", "127.0.1.42", "127.0.1.43")
	for _, addr := range []string{"127.0.1.42", "127.0.1.43"} {
		r, err := probe.NewResponder(probe.ResponderConfig{Addr: fmt.Sprintf("%s:%d", addr, port), Keys: [][]byte{fleetKey}})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(rctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	f.putPinglist(testPinglist("a", "127.0.1.41", port, 1, pinglist.Peer{Host: "b", Addr: "127.0.1.42"}, pinglist.Peer{Host: "c", Addr: "127.0.1.43"}))
	// 100 ms probes over tcp and udp: 3 extra probes a peer cost 60/s, so
	// a budget of 100/s holds one peer's, not two.
	a := startAgent(t, Config{Host: "a", NATSURL: f.url, SpoolDir: t.TempDir(), MaxExtraProbes: 100})
	put := func(b *pinglist.Boost) {
		t.Helper()
		data, err := pinglist.EncodeBoost(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ev.Put(ctx, b.Host, data); err != nil {
			t.Fatal(err)
		}
	}
	// results a sent to b and to c, over all outcomes.
	sent := func() (b, c int) {
		for k, n := range checkBatches(t, f.batches()) {
			var dst, proto, outcome string
			fmt.Sscanf(k, "a>%s %s %s", &dst, &proto, &outcome)
			switch dst {
			case "b":
				b += n
			case "c":
				c += n
			}
		}
		return b, c
	}
	// rate waits until, over the next stretch of results, b gets about
	// ratio times c's probes.
	rate := func(ratio float64) {
		t.Helper()
		b0, c0 := sent()
		testkit.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
			b, c := sent()
			db, dc := float64(b-b0), float64(c-c0)
			if dc < 40 {
				return errors.New("waiting for results")
			}
			if got := db / dc; got < ratio*0.7 || got > ratio*1.3 {
				b0, c0 = b, c // look at a fresh stretch: the change may be recent
				return fmt.Errorf("b got %.2f times c's probes, want %.1f", got, ratio)
			}
			return nil
		})
	}
	rate(1)

	put(&pinglist.Boost{Host: "a", Version: 1, Until: time.Now().Add(time.Hour), Probes: 4, Peers: []string{"zz", "b", "c"}, Elements: []string{"x"}})
	rate(4)
	if n := testutil.ToFloat64(a.m.evidencePeers); n != 1 {
		t.Errorf("evidence peers %v, want 1 (b; c over the budget)", n)
	}
	if n := testutil.ToFloat64(a.m.evidenceRefused); n < 2 {
		t.Errorf("refused %v, want zz (not in the pinglist) and c (over budget)", n)
	}
	extra, err := testutil.GatherAndCount(a.reg, "meshlens_probe_extra_total")
	if err != nil || extra != 1 {
		t.Errorf("extra probes counter: %d series, %v", extra, err)
	}

	// Withdrawn.
	if err := ev.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	rate(1)
	// Lapsed: a request whose end passes is not followed any more, even
	// if nobody withdraws it.
	put(&pinglist.Boost{Host: "a", Version: 2, Until: time.Now().Add(3 * time.Second), Probes: 4, Peers: []string{"b"}})
	rate(4)
	rate(1)
	if n := testutil.ToFloat64(a.m.evidencePeers); n != 0 {
		t.Errorf("evidence peers %v after the lapse", n)
	}
	// Somebody else's request.
	put(&pinglist.Boost{Host: "b", Version: 3, Until: time.Now().Add(time.Hour), Probes: 4, Peers: []string{"a"}})
	data, _ := pinglist.EncodeBoost(&pinglist.Boost{Host: "b", Version: 3, Until: time.Now().Add(time.Hour), Probes: 4, Peers: []string{"b"}})
	if _, err := ev.Put(ctx, "a", data); err != nil {
		t.Fatal(err)
	}
	testkit.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if testutil.ToFloat64(a.m.evidenceRejected) != 1 {
			return errors.New("waiting for the refusal")
		}
		return nil
	})
}
