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
		{"exact past inline", []float64{40e-6, 41e-6, 42e-6, 43e-6, 44e-6}, false},
		{"5 s does not fit 32 bits", []float64{40e-6, 5}, true},
		{"after a sketch, exact values go to it", []float64{5, 40e-6, 41e-6}, true},
		{"not a whole nanosecond", []float64{1.5e-9}, true},
		{"largest inline", []float64{float64(math.MaxUint32) / 1e9}, false},
		{"exact up to maxExactRTTs", rttsFrom(maxExactRTTs), false},
		{"spills past maxExactRTTs", rttsFrom(maxExactRTTs + 1), true},
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
			if l.hasSketch() != tt.wantSketch {
				t.Fatalf("sketch %v, want %v", l.hasSketch(), tt.wantSketch)
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
			// Every value is kept: the extremes are found (sketch or not).
			if got, _ := l.quantile(0); math.Abs(got-lo) > lo*RelativeAccuracy {
				t.Errorf("min = %v, want %v", got, lo)
			}
			if got, _ := l.quantile(1); math.Abs(got-hi) > hi*RelativeAccuracy {
				t.Errorf("max = %v, want %v", got, hi)
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

// rttsFrom returns n distinct RTTs, largest first, so that sorting matters.
func rttsFrom(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(40_000+n-i) / 1e9
	}
	return out
}

// TestLatencyFreezeAndMerge: freezing (sorting the exact values of a sealed
// rollup) changes no quantile, and merging exact and sketched sets of any
// sizes keeps every value.
func TestLatencyFreezeAndMerge(t *testing.T) {
	for _, n := range []int{1, inlineRTTs, inlineRTTs + 1, 20, maxExactRTTs} {
		var l latency
		for _, v := range rttsFrom(n) {
			l.add(v)
		}
		var before []float64
		for _, q := range Quantiles {
			v, _ := l.quantile(q)
			before = append(before, v)
		}
		l.freeze()
		for i, q := range Quantiles {
			if v, _ := l.quantile(q); v != before[i] {
				t.Errorf("n=%d q%v: %v after freeze, %v before", n, q, v, before[i])
			}
		}
		if lo, _ := l.quantile(0); lo != float64(40_001)/1e9 {
			t.Errorf("n=%d: min %v", n, lo)
		}
	}
	for _, sizes := range [][2]int{{3, 3}, {30, 30}, {40, 40}, {2, 100}, {100, 2}, {100, 100}} {
		var a, b latency
		for _, v := range rttsFrom(sizes[0]) {
			a.add(v)
		}
		for _, v := range rttsFrom(sizes[1]) {
			b.add(v * 2)
		}
		a.merge(&b)
		if int(a.count) != sizes[0]+sizes[1] {
			t.Errorf("%v: count %d", sizes, a.count)
		}
		hi, _ := a.quantile(1)
		want := float64(2*(40_000+sizes[1])) / 1e9
		if math.Abs(hi-want) > want*RelativeAccuracy {
			t.Errorf("%v: max %v, want %v", sizes, hi, want)
		}
		if c := a.clone(); c.count != a.count || (a.over != nil && c.over == a.over) {
			t.Errorf("%v: clone shares its overflow", sizes)
		}
	}
}

// TestPairStatsSize guards the per-pair window's footprint: 12.8 M of them
// per window at 10,000 hosts, several windows alive (see PairStats).
func TestPairStatsSize(t *testing.T) {
	if got := unsafe.Sizeof(PairStats{}); got > 64 {
		t.Errorf("PairStats is %d bytes, want at most 64", got)
	}
}
