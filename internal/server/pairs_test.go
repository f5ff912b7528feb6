package server

import (
	"encoding/json"
	"maps"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/wire"
)

// TestPairWindowLatencyAbsent: a window none of whose probes was answered
// has no latency in /api/v1/pairs, not a latency of 0.
func TestPairWindowLatencyAbsent(t *testing.T) {
	start := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		w    aggregate.PairWindow
		want map[string]float64 // the latency fields of the JSON
	}{
		{"all lost", aggregate.PairWindow{Start: start, End: start.Add(10 * time.Second), Sent: 3, Lost: 3, LossRatio: 1}, map[string]float64{}},
		{"answered", aggregate.PairWindow{Start: start, End: start.Add(10 * time.Second), Sent: 3, Lost: 1, LossRatio: 1.0 / 3,
			LatencySeconds: []aggregate.Quantile{{Q: 0.5, Value: 40e-6}, {Q: 0.9, Value: 50e-6}, {Q: 0.99, Value: 60e-6}, {Q: 0.999, Value: 61e-6}}},
			map[string]float64{"p50_seconds": 40e-6, "p90_seconds": 50e-6, "p99_seconds": 60e-6, "p999_seconds": 61e-6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(apiPairWindow(tt.w, wire.Protocol_PROTOCOL_UDP))
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if got["sent"] != 3.0 || got["proto"] != "udp" || got["loss_ratio"] != tt.w.LossRatio {
				t.Errorf("window %s lost its counts", b)
			}
			lat := map[string]float64{}
			for _, k := range []string{"p50_seconds", "p90_seconds", "p99_seconds", "p999_seconds"} {
				if v, ok := got[k]; ok {
					lat[k], _ = v.(float64)
				}
			}
			if !maps.Equal(lat, tt.want) {
				t.Errorf("latencies %v, want %v (absent when nothing was answered): %s", lat, tt.want, b)
			}
		})
	}
}
