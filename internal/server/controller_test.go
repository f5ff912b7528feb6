package server

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/bus/bustest"
	"github.com/meshlens/meshlens/internal/pinglist"
	"github.com/meshlens/meshlens/internal/topology"
)

func startBus(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := bus.Connect(bustest.StartNATS(t, bus.EmbeddedConfig{}).ClientURL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureStreams(context.Background(), js, bus.StreamSettings{}); err != nil {
		t.Fatal(err)
	}
	return js
}

func gen(t *testing.T, racks int) *topology.Topology {
	t.Helper()
	topo, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 1, RacksPerPod: racks, HostsPerRack: 2, LeavesPerPod: 1, Spines: 1})
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func storedVersion(t *testing.T, js jetstream.JetStream, host string) (uint64, bool) {
	t.Helper()
	kv, err := js.KeyValue(context.Background(), bus.PinglistBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), host)
	if bus.IsNotFound(err) {
		return 0, false
	} else if err != nil {
		t.Fatal(err)
	}
	pl, err := pinglist.Decode(e.Value())
	if err != nil {
		t.Fatal(err)
	}
	return pl.Version, true
}

func TestControllerVersionsOnlyOnChange(t *testing.T) {
	ctx := context.Background()
	js := startBus(t)
	newController := func() *Controller {
		return NewController(pinglist.Settings{Interval: 10 * time.Second}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	}

	c := newController()
	if err := c.Apply(ctx, js, gen(t, 3)); err != nil {
		t.Fatal(err)
	}
	if v, ok := storedVersion(t, js, "dc1-pod1-rack3-h02"); !ok || v != 1 || c.Version() != 1 {
		t.Fatalf("first apply: stored version %d (present %v), controller %d", v, ok, c.Version())
	}
	if got := testutil.ToFloat64(c.published); got != 6 {
		t.Fatalf("published %v lists, want 6", got)
	}

	// A restarted controller with the same topology keeps the version and
	// rewrites nothing, so no agent is woken.
	c = newController()
	if err := c.Apply(ctx, js, gen(t, 3)); err != nil {
		t.Fatal(err)
	}
	if c.Version() != 1 || testutil.ToFloat64(c.published) != 0 {
		t.Fatalf("unchanged topology: version %d, %v lists rewritten", c.Version(), testutil.ToFloat64(c.published))
	}

	// A smaller fabric bumps the version and deletes the removed hosts.
	if err := c.Apply(ctx, js, gen(t, 2)); err != nil {
		t.Fatal(err)
	}
	if v, _ := storedVersion(t, js, "dc1-pod1-rack1-h01"); v != 2 {
		t.Fatalf("after a change: version %d, want 2", v)
	}
	if _, ok := storedVersion(t, js, "dc1-pod1-rack3-h02"); ok {
		t.Fatal("pinglist of a removed host is still published")
	}
	if pl, ok := c.Pinglist("dc1-pod1-rack1-h01"); !ok || len(pl.Peers) != 2 {
		t.Fatalf("served pinglist %+v", pl)
	}
}

func TestEnsureFleetKeyIsStable(t *testing.T) {
	ctx := context.Background()
	js := startBus(t)
	if err := EnsureFleetKey(ctx, js); err != nil {
		t.Fatal(err)
	}
	kv, _ := js.KeyValue(ctx, bus.FleetBucket)
	first, err := kv.Get(ctx, bus.ResponderKeyKey)
	if err != nil || len(first.Value()) < 32 {
		t.Fatalf("fleet key: %v", err)
	}
	if err := EnsureFleetKey(ctx, js); err != nil {
		t.Fatal(err)
	}
	again, _ := kv.Get(ctx, bus.ResponderKeyKey)
	if string(again.Value()) != string(first.Value()) {
		t.Fatal("a second start replaced the fleet key: every agent's probes would fail verification")
	}
}
