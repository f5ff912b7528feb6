package agent

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/probe"
	"github.com/meshlens/meshlens/internal/wire"
)

// TestTraceTriggers: which probe results are traced, and the budget.
// No tracer runs here (that needs raw sockets: test/e2e/trace), so an
// admitted trace shows as skipped for no_tracer; a refused one as budget.
func TestTraceTriggers(t *testing.T) {
	vc := clock.NewVirtual(time.Unix(1_700_000_000, 0))
	reg := prometheus.NewRegistry()
	a, err := New(Config{Host: "h1", NATSURL: "nats://127.0.0.1:1", SpoolDir: t.TempDir(), Clock: vc, Registerer: reg,
		TraceRate: 1, TraceBurst: 2})
	if err != nil {
		t.Fatal(err)
	}
	res := func(dst string, proto wire.Protocol, o wire.Outcome, rtt time.Duration) *wire.ProbeResult {
		return &wire.ProbeResult{Dst: dst, Protocol: proto, Outcome: o, RttNs: int64(rtt), SrcAddr: "198.18.1.1", SrcPort: 40000,
			DstAddr: "198.18.3.2", DstPort: 7777}
	}
	tcp, udp, icmp := wire.Protocol_PROTOCOL_TCP, wire.Protocol_PROTOCOL_UDP, wire.Protocol_PROTOCOL_ICMP
	ok, lost := wire.Outcome_OUTCOME_OK, wire.Outcome_OUTCOME_LOST
	steps := []struct {
		name    string
		r       *wire.ProbeResult
		trigger string // "" not traced
		excess  time.Duration
	}{
		{"first rtt: no baseline", res("h2", tcp, ok, 100*time.Microsecond), "", 0},
		{"within the margin", res("h2", tcp, ok, 350*time.Microsecond), "", 0},
		{"clearly slow", res("h2", tcp, ok, 500*time.Microsecond), "slow", 400 * time.Microsecond},
		{"other protocol has its own baseline", res("h2", udp, ok, 500*time.Microsecond), "", 0},
		{"slow relative to a large minimum only past the minimum", res("h2", udp, ok, 900*time.Microsecond), "", 0},
		{"twice the minimum and more", res("h2", udp, ok, 1100*time.Microsecond), "slow", 600 * time.Microsecond},
		{"lost", res("h3", tcp, lost, 0), "lost", 0},
		{"syn retransmit", res("h3", tcp, wire.Outcome_OUTCOME_SYN_RETRANSMIT, 1100*time.Millisecond), "lost", 0},
		{"refused: the host answered", res("h3", tcp, wire.Outcome_OUTCOME_REFUSED, 0), "", 0},
		{"error: never left", res("h3", tcp, wire.Outcome_OUTCOME_ERROR, 0), "", 0},
		{"icmp is not traced", res("h3", icmp, lost, 0), "", 0},
	}
	for _, s := range steps {
		a.paths.mu.Lock()
		trigger, tp := a.paths.anomalyLocked(s.r, vc.Now())
		a.paths.mu.Unlock()
		if s.r.Protocol == icmp {
			before := testutil.ToFloat64(a.paths.m.skipped.WithLabelValues(skipNoTracer)) + testutil.ToFloat64(a.paths.m.skipped.WithLabelValues(skipBudget))
			a.observe(s.r)
			after := testutil.ToFloat64(a.paths.m.skipped.WithLabelValues(skipNoTracer)) + testutil.ToFloat64(a.paths.m.skipped.WithLabelValues(skipBudget))
			if after != before {
				t.Errorf("%s: icmp probe was considered for tracing", s.name)
			}
			continue
		}
		if trigger != s.trigger {
			t.Errorf("%s: trigger %q, want %q", s.name, trigger, s.trigger)
			continue
		}
		if trigger == "" {
			continue
		}
		if time.Duration(tp.ExcessNs) != s.excess || tp.Lost != (trigger == "lost") || tp.SrcPort != 40000 || tp.DstPort != 7777 {
			t.Errorf("%s: traced probe %+v", s.name, tp)
		}
	}

	// The budget: 2 at once, then 1/s.
	skipped := func(reason string) float64 { return testutil.ToFloat64(a.paths.m.skipped.WithLabelValues(reason)) }
	nt, bu := skipped(skipNoTracer), skipped(skipBudget)
	for range 5 {
		a.observe(res("h4", tcp, lost, 0))
	}
	if got, want := skipped(skipNoTracer)-nt, 0.0; got > 2 || got < want {
		t.Errorf("admitted %v traces of 5 at once, want at most the burst, 2", got)
	}
	if got := skipped(skipBudget) - bu; got < 3 {
		t.Errorf("budget refused %v of 5 at once, want >= 3", got)
	}
	vc.Advance(time.Second)
	nt = skipped(skipNoTracer)
	a.observe(res("h4", tcp, lost, 0))
	if skipped(skipNoTracer)-nt != 1 {
		t.Error("a second later the budget did not admit one trace")
	}

	// The minimum is recent: after two periods a slower normal is normal.
	for range 3 {
		vc.Advance(minRTTPeriod + time.Second)
		a.observe(res("h2", tcp, ok, 2*time.Millisecond))
	}
	a.paths.mu.Lock()
	trigger, _ := a.paths.anomalyLocked(res("h2", tcp, ok, 2100*time.Microsecond), vc.Now())
	a.paths.mu.Unlock()
	if trigger != "" {
		t.Errorf("after the minimum moved to 2ms, 2.1ms is %q", trigger)
	}
}

// TestTraceHandlerInput: bad on-demand requests get a clear 4xx; without
// a tracer a good one gets 503.
func TestTraceHandlerInput(t *testing.T) {
	a, err := New(Config{Host: "h1", NATSURL: "nats://127.0.0.1:1", SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.TraceHandler())
	defer srv.Close()
	cases := []struct {
		query string
		code  int
		body  string
	}{
		{"", http.StatusBadRequest, "dst"},
		{"dst=nohost", http.StatusBadRequest, "neither a peer"},
		{"dst=198.18.3.2&protocol=icmp", http.StatusBadRequest, "tcp or udp"},
		{"dst=198.18.3.2&src_port=70000", http.StatusBadRequest, "src_port"},
		{"dst=198.18.3.2&dst_port=0", http.StatusBadRequest, "dst_port"},
		{"dst=198.18.3.2", http.StatusServiceUnavailable, "path discovery is off"},
	}
	for _, c := range cases {
		resp, err := http.Get(srv.URL + "/trace?" + c.query)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(b.String(), c.body) {
			t.Errorf("%q: %d %q, want %d containing %q", c.query, resp.StatusCode, b.String(), c.code, c.body)
		}
	}
}

// TestTraceBackRequests: a peer's trace-back request becomes a reverse
// trace job toward the peer's address and port, from the address and
// port its reply left from; it spends the agent's own trace budget and
// never holds the agent's mark.
func TestTraceBackRequests(t *testing.T) {
	vc := clock.NewVirtual(time.Unix(1_700_000_000, 0))
	a, err := New(Config{Host: "h2", NATSURL: "nats://127.0.0.1:1", SpoolDir: t.TempDir(), Clock: vc, Registerer: prometheus.NewRegistry(),
		TraceRate: 1, TraceBurst: 2})
	if err != nil {
		t.Fatal(err)
	}
	from, local := netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("198.18.3.2")
	tb := probe.TraceBack{Protocol: wire.Protocol_PROTOCOL_UDP, Port: 40123, ProbeStartUnixNano: vc.Now().UnixNano() - int64(time.Second)}
	skipped := func(reason string) float64 {
		return testutil.ToFloat64(a.paths.m.reverseSkipped.WithLabelValues(reason))
	}

	a.onTraceBack(from, local, 7777, tb)
	if skipped(skipNoTracer) != 1 || len(a.paths.queue) != 0 {
		t.Fatalf("without a tracer: skipped %v, queued %d", skipped(skipNoTracer), len(a.paths.queue))
	}
	a.setTracer(new(probe.Tracer), nil, netip.Addr{}) // never run: the jobs stay queued
	a.onTraceBack(from, local, 7777, tb)
	a.onTraceBack(from, local, 7777, tb) // the budget's burst (2) is spent: one above
	if skipped(skipBudget) != 1 || len(a.paths.queue) != 1 {
		t.Fatalf("budget: skipped %v, queued %d", skipped(skipBudget), len(a.paths.queue))
	}
	if mark := a.paths.heldBefore(1 << 62); mark != 1<<62 {
		t.Errorf("a queued reverse trace holds the agent's mark at %d", mark)
	}
	job := <-a.paths.queue
	p := job.probe
	if job.trigger != triggerReverse || job.held || !p.Reverse || !p.Lost || p.Dst != from.String() || p.Protocol != tb.Protocol ||
		p.StartUnixNano != tb.ProbeStartUnixNano || p.SrcPort != 7777 || p.DstPort != 40123 {
		t.Errorf("job %+v, probe %+v", job, p)
	}
	if job.flow.Src != netip.AddrPortFrom(local, 7777) || job.flow.Dst != netip.AddrPortFrom(from, 40123) || job.flow.Protocol != tb.Protocol {
		t.Errorf("traced flow %+v: want the reply's, %v:7777 -> %v:40123", job.flow, local, from)
	}
	// The agent's own traces compete for the same budget.
	vc.Advance(time.Second)
	a.observe(&wire.ProbeResult{Dst: "h1", Protocol: wire.Protocol_PROTOCOL_TCP, Outcome: wire.Outcome_OUTCOME_LOST, SrcAddr: "198.18.3.2",
		SrcPort: 40000, DstAddr: "198.18.1.1", DstPort: 7777})
	a.onTraceBack(from, local, 7777, tb)
	if skipped(skipBudget) != 2 {
		t.Errorf("a second later, one trace and one request: %v refused, want the request", skipped(skipBudget))
	}
}
