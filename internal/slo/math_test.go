package slo

import (
	"math"
	"testing"
	"time"
)

// Hand-computed: target 99.9% leaves a 0.1% budget.
func TestBudgetMath(t *testing.T) {
	tests := []struct {
		name                 string
		c                    Counts
		target               float64
		errRatio, burn, left float64
	}{
		{"clean", Counts{Bad: 0, Total: 1000}, 0.999, 0, 0, 1},
		{"exactly on budget", Counts{Bad: 1, Total: 1000}, 0.999, 0.001, 1, 0},
		{"half spent", Counts{Bad: 5, Total: 10000}, 0.999, 0.0005, 0.5, 0.5},
		{"overspent 3x", Counts{Bad: 3, Total: 1000}, 0.999, 0.003, 3, -2},
		{"99.95 at 14.4x", Counts{Bad: 72, Total: 10000}, 0.9995, 0.0072, 14.4, -13.4},
		{"all bad 99%", Counts{Bad: 100, Total: 100}, 0.99, 1, 100, -99},
		{"no events", Counts{}, 0.999, math.NaN(), math.NaN(), math.NaN()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check := func(what string, got, want float64) {
				if math.IsNaN(want) != math.IsNaN(got) || (!math.IsNaN(want) && math.Abs(got-want) > 1e-9) {
					t.Errorf("%s = %v, want %v", what, got, want)
				}
			}
			check("error ratio", tc.c.ErrorRatio(), tc.errRatio)
			check("burn rate", BurnRate(tc.c, tc.target), tc.burn)
			check("budget remaining", BudgetRemaining(tc.c, tc.target), tc.left)
		})
	}
}

// Event weighting: a busy bad hour and a quiet clean hour are not averaged
// as two ratios.
func TestEventWeighted(t *testing.T) {
	busy := Counts{Bad: 90, Total: 9000} // 1%
	quiet := Counts{Bad: 0, Total: 1000} // 0%
	whole := Counts{Bad: busy.Bad + quiet.Bad, Total: busy.Total + quiet.Total}
	if got := whole.ErrorRatio(); math.Abs(got-0.009) > 1e-12 {
		t.Fatalf("event-weighted error ratio %v, want 0.009 (not the 0.005 average of ratios)", got)
	}
	if got := BudgetConsumed(busy.Bad, whole.Total, 0.99); math.Abs(got-0.9) > 1e-12 {
		t.Fatalf("consumed by the busy hour %v, want 0.9", got)
	}
}

func TestScaleFactor(t *testing.T) {
	tests := []struct {
		factor float64
		window time.Duration
		want   float64
	}{
		{14.4, 30 * 24 * time.Hour, 14.4},
		{14.4, 28 * 24 * time.Hour, 13.44},
		{14.4, 7 * 24 * time.Hour, 3.36},
		{6, 7 * 24 * time.Hour, 1.4},
		{1, 90 * 24 * time.Hour, 3},
	}
	for _, tc := range tests {
		if got := ScaleFactor(tc.factor, tc.window); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("ScaleFactor(%v, %v) = %v, want %v", tc.factor, tc.window, got, tc.want)
		}
	}
}

func TestTierFiring(t *testing.T) {
	page := Tier{Name: "page-1h", Factor: 14.4, Long: time.Hour, Short: 5 * time.Minute}
	// Target 99.9%: 14.4x is an error ratio of 1.44%.
	tests := []struct {
		name        string
		long, short Counts
		minEvents   float64
		want        bool
	}{
		{"both above", Counts{20, 1000}, Counts{2, 100}, 100, true},
		{"long only (already recovering)", Counts{20, 1000}, Counts{1, 100}, 100, false},
		{"short only (a blip)", Counts{10, 1000}, Counts{5, 100}, 100, false},
		{"long just below factor", Counts{14, 1000}, Counts{2, 100}, 100, false},
		{"too few events", Counts{2, 50}, Counts{2, 10}, 100, false},
		{"few events, rule off", Counts{2, 50}, Counts{2, 10}, 0, true},
		{"no data", Counts{}, Counts{}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := page.Firing(tc.long, tc.short, 0.999, tc.minEvents); got != tc.want {
				t.Errorf("Firing = %v, want %v (burn long %v short %v)", got, tc.want, BurnRate(tc.long, 0.999), BurnRate(tc.short, 0.999))
			}
		})
	}
}

// A window younger than its length is judged against the events it will
// hold at the recent rate; a full one against what it holds.
func TestWindowEvents(t *testing.T) {
	week := 7 * 24 * time.Hour
	tests := []struct {
		name   string
		whole  Counts
		recent map[time.Duration]Counts
		want   float64
	}{
		{"three minutes into a week", Counts{Total: 360}, map[time.Duration]Counts{time.Minute: {Total: 120}, 5 * time.Minute: {Total: 360}}, 120 * 7 * 24 * 60},
		{"full window", Counts{Total: 2 * 7 * 24 * 3600}, map[time.Duration]Counts{time.Hour: {Total: 7200}}, 2 * 7 * 24 * 3600},
		{"no recent windows", Counts{Total: 50}, nil, 50},
		{"recent windows empty", Counts{Total: 50}, map[time.Duration]Counts{time.Minute: {}}, 50},
		{"window itself ignored", Counts{Total: 50}, map[time.Duration]Counts{week: {Total: 50}}, 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := WindowEvents(tc.whole, week, tc.recent); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("WindowEvents = %v, want %v", got, tc.want)
			}
		})
	}
	// The demo's case: 2% loss for three minutes of a 99.9% week spends
	// about 1% of the budget, not 1900%.
	whole := Counts{Bad: 0.02 * 360, Total: 360}
	used := BudgetConsumed(whole.Bad, WindowEvents(whole, week, map[time.Duration]Counts{time.Minute: {Total: 120}}), 0.999)
	if used < 0 || used > 0.01 {
		t.Errorf("three minutes of 2%% loss consumed %v of a week's budget", used)
	}
}
