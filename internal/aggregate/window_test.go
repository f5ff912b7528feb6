package aggregate

import (
	"math"
	"testing"
	"unsafe"
)

// TestLatencyInlineExact: the first inlineRTTs RTTs are kept exactly as
// nanoseconds; an RTT that is no whole nanosecond count below 2^32 (a slow
// HTTP target, a merged sketch value) moves the set to a sketch at once, and
// every quantile stays within the sketch's accuracy.
func TestLatencyInlineExact(t *testing.T) {
	tests := []struct {
		name       string
		values     []float64
		wantSketch bool
	}{
		{"one", []float64{40e-6}, false},
		{"inline full", []float64{40e-6, 41e-6, 1e-3, 0}, false},
		{"spills past inline", []float64{40e-6, 41e-6, 42e-6, 43e-6, 44e-6}, true},
		{"5 s does not fit 32 bits", []float64{40e-6, 5}, true},
		{"not a whole nanosecond", []float64{1.5e-9}, true},
		{"largest inline", []float64{float64(math.MaxUint32) / 1e9}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l latency
			for _, v := range tt.values {
				l.add(v)
			}
			if int(l.count) != len(tt.values) {
				t.Fatalf("count %d, want %d", l.count, len(tt.values))
			}
			if (l.sketch != nil) != tt.wantSketch {
				t.Fatalf("sketch %v, want %v", l.sketch != nil, tt.wantSketch)
			}
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, v := range tt.values {
				lo, hi = min(lo, v), max(hi, v)
			}
			for _, q := range []float64{0, 0.5, 1} {
				got, ok := l.quantile(q)
				if !ok {
					t.Fatalf("q%v: no value", q)
				}
				if got < lo*(1-RelativeAccuracy) || got > hi*(1+RelativeAccuracy) {
					t.Errorf("q%v = %v outside [%v, %v]", q, got, lo, hi)
				}
			}
			if !tt.wantSketch {
				// Exact: the largest is the largest value given.
				if got, _ := l.quantile(1); got != hi {
					t.Errorf("max = %v, want exactly %v", got, hi)
				}
			}
		})
	}
}

// TestPairStatsSize guards the per-pair window's footprint: 12.8 M of them
// per window at 10,000 hosts, several windows alive (see PairStats).
func TestPairStatsSize(t *testing.T) {
	if got := unsafe.Sizeof(PairStats{}); got > 64 {
		t.Errorf("PairStats is %d bytes, want at most 64", got)
	}
}
