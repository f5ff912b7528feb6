package localize

import (
	"math"
	"testing"
)

// TestMixtureLLR: read trace by trace, certain crossings give the
// conditional binomial test, and traces that only may have crossed the
// candidate do not dilute those that surely did.
func TestMixtureLLR(t *testing.T) {
	tests := []struct {
		name string
		ws   []float64 // the candidate's traces: probability each crossed it
		u, q float64
		want func(got float64) bool
		desc string
	}{
		{"certain crossings are the binomial test", []float64{1, 1, 1, 1, 1, 1, 1, 1}, 20, 0.1,
			func(got float64) bool { b, _ := binomialLLR(8, 20, 0.1); return math.Abs(got-b) < 1e-6 }, "binomialLLR(8, 20, 0.1)"},
		{"no more than expected is no evidence", []float64{1, 1}, 20, 0.1,
			func(got float64) bool { return got == 0 }, "0"},
		// The lab's lossy leaf-spine link: half its anomalies crossed it
		// forward (certain), half maybe on the way back (1/4).
		{"maybe-crossings are not diluted", append(repeat(1, 12), repeat(0.25, 12)...), 24, 0.3,
			func(got float64) bool { b, _ := binomialLLR(15, 24, 0.3); return got > b+5 }, "well above binomialLLR(15, 24, 0.3)"},
		{"a coin flip between siblings is no evidence for either", repeat(0.5, 24), 24, 0.5,
			func(got float64) bool { return got == 0 }, "0"},
		{"halves never beat certainty", repeat(0.5, 24), 24, 0.45,
			func(got float64) bool { b, _ := binomialLLR(24, 24, 0.45); return got <= b+1e-9 }, "at most binomialLLR(24, 24, 0.45)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			all := make([]member, len(tc.ws))
			mass := make([]float64, len(tc.ws))
			for i, w := range tc.ws {
				all[i], mass[i] = member{int32(i), w}, 1
			}
			m := &meshlens{members: func(int32) []member { return all }, mass: mass}
			if got := m.mixtureLLR(0, tc.u, tc.q); !tc.want(got) {
				t.Errorf("mixtureLLR = %.3f, want %s", got, tc.desc)
			}
		})
	}
}

func repeat(w float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = w
	}
	return out
}
