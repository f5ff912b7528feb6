package aggregate

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/wire"
)

// TestIngesterRejectsAgentClockOff: an agent whose clock is ten minutes off
// (behind or ahead) says so in bus.AgentClockHeader; every result of its
// batches is refused as clock_skew and none lands in any window or counter,
// while a batch with an honest clock, or without the header (older agents),
// is aggregated.
func TestIngesterRejectsAgentClockOff(t *testing.T) {
	e := newEnv(t)
	r := e.start(clock.Real{})
	defer r.kill(t)
	rng := rand.New(rand.NewPCG(1, 2))
	agents := e.fab.hosts()
	now := time.Now()
	publishAt := func(b *wire.Batch, agentClock time.Time) {
		t.Helper()
		data, err := wire.Encode(b)
		if err != nil {
			t.Fatal(err)
		}
		msg := &nats.Msg{Subject: bus.ResultsSubject(0, b.Agent), Data: data, Header: nats.Header{}}
		if !agentClock.IsZero() {
			msg.Header.Set(bus.AgentClockHeader, strconv.FormatInt(agentClock.UnixNano(), 10))
		}
		if _, err := e.js.PublishMsg(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
	}
	// Behind: the probe times look like late data, which they are not.
	behind := e.probeRound(rng, agents[0], 1, now.Add(-10*time.Minute))
	publishAt(behind, now.Add(-10*time.Minute))
	// Ahead.
	ahead := e.probeRound(rng, agents[1], 1, now.Add(10*time.Minute))
	publishAt(ahead, now.Add(10*time.Minute))
	// Honest, with and without the header.
	good := e.probeRound(rng, agents[2], 1, now.Add(-5*time.Second))
	publishAt(good, now)
	e.expect(good)
	legacy := e.probeRound(rng, agents[3], 1, now.Add(-5*time.Second))
	publishAt(legacy, time.Time{})
	e.expect(legacy)

	e.waitCounters(r)
	want := float64(len(behind.Results) + len(ahead.Results))
	testkit.CheckFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if got := testutil.ToFloat64(r.agg.m.rejected.WithLabelValues("clock_skew")); got != want {
			return fmt.Errorf("clock_skew rejections %v, want %v", got, want)
		}
		return nil
	})
	for _, st := range r.agg.Agents() {
		if (st.Agent == agents[0] || st.Agent == agents[1]) && st.Results != 0 {
			t.Errorf("agent %s with a bad clock has %d results aggregated", st.Agent, st.Results)
		}
	}
}
