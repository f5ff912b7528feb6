package probe

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkTraceAnswer is the tracer's CPU per answer: parsing a router's
// time-exceeded and matching it to the trace packet it quotes.
func BenchmarkTraceAnswer(b *testing.B) {
	tr := &Tracer{inflight: map[traceKey]*tracePacket{}, m: &traceMetrics{dropped: prometheus.NewCounterVec(
		prometheus.CounterOpts{Name: "x_dropped_total"}, []string{"reason"})}}
	k := traceKey{src: trSrc, dst: trDst, proto: ipProtoTCP, sport: 40001, dport: 7777, ipid: 42}
	pkt := icmpError(trRouter, trSrc, icmpTimeExceeded, 0, buildTCPSYN(k, 2, 0xabcd002a)[:28])
	run := &traceRun{dst: trDst, events: make(chan traceEvent, 1)}
	b.ReportAllocs()
	for b.Loop() {
		tr.mu.Lock()
		tr.inflight[k] = &tracePacket{run: run, ttl: 2, quoteCheck: 0xabcd002a, replyCheck: 0xabcd002a}
		tr.mu.Unlock()
		a, err := parseICMPError(pkt)
		if err != nil {
			b.Fatal(err)
		}
		tr.deliver(a)
		<-run.events
	}
}
