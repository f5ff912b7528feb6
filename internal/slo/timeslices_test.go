package slo

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"
)

// Time-slice budgets, per tier, in Prometheus's rule engine (promtool test
// rules) and in meshlens's engine fed the same series: both fire the same
// tiers at the same times, where the slices burn the budget and nowhere
// else.
func TestTimeslicesFireWhereTheBudgetBurns(t *testing.T) {
	promtool := lookPromtool(t)
	const (
		errs = `api_requests_total{code="500"}`
		oks  = `api_requests_total{code="200"}`
	)
	day := 24 * 60
	slices := []string{"testdata/corpus/timeslices.yaml"} // 99 % of 5m slices at 95 % good, 30d
	occurrences := func(budgeting string) string {
		return `apiVersion: openslo/v1
kind: SLO
metadata: {name: api}
spec:
  budgetingMethod: ` + budgeting + `
  timeWindow: [{duration: 30d, isRolling: true}]
  objectives: [{target: 0.99, timeSliceWindow: 5m}]
  indicator:
    spec:
      ratioMetric:
        counter: true
        good: {metricSource: {type: Prometheus, spec: {query: 'sum(api_requests_total{code="200"})'}}}
        total: {metricSource: {type: Prometheus, spec: {query: sum(api_requests_total)}}}
`
	}
	// A slice is minutes (5k-4 ... 5k]: minute m belongs to slice (m-1)/5.
	slice := func(m int) int { return (m - 1) / 5 }
	oneReqPerSecond := func(bad func(m int) bool, share float64) (counter, counter) {
		e := byMinute(day, func(m int) float64 {
			if bad(m) {
				return 60 * share
			}
			return 0
		})
		o := byMinute(day, func(m int) float64 {
			if bad(m) {
				return 60 * (1 - share)
			}
			return 60
		})
		return e, o
	}
	everyFiftieth, everyFiftiethOK := oneReqPerSecond(func(m int) bool { return slice(m)%50 == 49 }, 0.5)
	outage, outageOK := oneReqPerSecond(func(m int) bool { return m > 600 && m <= 615 }, 1)
	// Busy healthy slices and quiet failing ones, alternating: 1000 req/min
	// all good, then 10 req/min half failing.
	alternating := func(good bool) counter {
		return byMinute(3*60, func(m int) float64 {
			switch {
			case slice(m)%2 == 0 && good:
				return 1000
			case slice(m)%2 == 0:
				return 0
			}
			return 5
		})
	}
	tests := []burnCase{
		{
			// 1 req/s, a tenth failing: every slice is below 95 % good.
			name:   "timeslices at 1 req/s, every slice bad: all tiers",
			files:  slices,
			series: map[string]counter{errs: perMinute(6, 180), oks: perMinute(54, 180)},
			firing: map[time.Duration][]string{
				65 * time.Minute:  {"page-1h", "page-6h", "ticket-1d", "ticket-3d"},
				170 * time.Minute: {"page-1h", "page-6h", "ticket-1d", "ticket-3d"},
			},
			engine:    true,
			evalEvery: 5 * time.Minute,
		},
		{
			// 2 % failing is 2x the event budget, but every slice is 98 %
			// good: no slice is bad, nothing burns.
			name:      "timeslices at 1 req/s, every slice 98 % good: quiet",
			files:     slices,
			series:    map[string]counter{errs: perMinute(1.2, 180), oks: perMinute(58.8, 180)},
			firing:    map[time.Duration][]string{65 * time.Minute: nil, 170 * time.Minute: nil},
			engine:    true,
			evalEvery: 5 * time.Minute,
		},
		{
			name:   "the same traffic counted as events burns 2x: the 3d ticket",
			slo:    "name: api\ntarget: 99%\nwindow: 30d\nsli: {ratio: {bad: 'sum(increase(api_requests_total{code=\"500\"}[{{.window}}]))', total: 'sum(increase(api_requests_total[{{.window}}]))'}}\n",
			series: map[string]counter{errs: perMinute(1.2, 180), oks: perMinute(58.8, 180)},
			firing: map[time.Duration][]string{170 * time.Minute: {"ticket-3d"}},
		},
		{
			// One bad slice in fifty is 2 % of the slices: 2x burn, which
			// only the 3d tier (1x over 3d and 6h) catches.
			name:   "timeslices, one bad slice in fifty: the 3d ticket only",
			files:  slices,
			series: map[string]counter{errs: everyFiftieth, oks: everyFiftiethOK},
			firing: map[time.Duration][]string{
				12 * time.Hour: {"ticket-3d"},
				17 * time.Hour: {"ticket-3d"},
				2 * time.Hour:  nil, // no bad slice yet
			},
			engine:    true,
			evalEvery: 5 * time.Minute,
		},
		{
			// Three bad slices after 10 good hours: 25 % of the last hour
			// (the 1h page) and 2.4 % of the day so far (the 3d ticket);
			// 4 % of 6h and 2.4 % of 1d are under the 6x and 3x tiers.
			name:   "timeslices, a 15-minute outage: the 1h page and the 3d ticket",
			files:  slices,
			series: map[string]counter{errs: outage, oks: outageOK},
			firing: map[time.Duration][]string{
				10*time.Hour + 15*time.Minute: {"page-1h", "ticket-3d"},
				// The short 5m window is clean again: the page stops.
				11 * time.Hour: {"ticket-3d"},
				10 * time.Hour: nil,
			},
			engine:    true,
			evalEvery: 5 * time.Minute,
		},
		{
			// RatioTimeslices weighs every slice the same: half the slices
			// at 50 % errors is a 25 % SLI loss, a 25x burn, though the
			// failing slices hold 0.5 % of the events.
			name:   "ratio timeslices, quiet slices failing: every tier burning",
			slo:    occurrences("RatioTimeslices"),
			series: map[string]counter{oks: alternating(true), errs: alternating(false)},
			firing: map[time.Duration][]string{
				// The last slice (60-65m) is a good one: the 5m window of
				// the 1h page does not burn.
				65 * time.Minute: {"page-6h", "ticket-1d", "ticket-3d"},
				70 * time.Minute: {"page-1h", "page-6h", "ticket-1d", "ticket-3d"},
			},
			engine:    true,
			evalEvery: 5 * time.Minute,
		},
		{
			name:      "the same traffic counted as events: 0.5x burn, quiet",
			slo:       strings.Replace(occurrences("Occurrences"), ", timeSliceWindow: 5m", "", 1),
			series:    map[string]counter{oks: alternating(true), errs: alternating(false)},
			firing:    map[time.Duration][]string{65 * time.Minute: nil, 70 * time.Minute: nil},
			engine:    true,
			evalEvery: 5 * time.Minute,
		},
		{
			name:      "ratio timeslices, every slice 2 % failing: the 3d ticket only",
			slo:       occurrences("RatioTimeslices"),
			series:    map[string]counter{errs: perMinute(1.2, 180), oks: perMinute(58.8, 180)},
			firing:    map[time.Duration][]string{170 * time.Minute: {"ticket-3d"}},
			engine:    true,
			evalEvery: 5 * time.Minute,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runBurnCase(t, promtool, tc) })
	}
}

// The engine's status of a time-slice SLO counts slices: the slices
// holding events and the bad ones, the SLI as their share; the tiers'
// events (the minimum-events guard) are still events.
func TestEngineTimesliceStatus(t *testing.T) {
	slos, err := Load("testdata/corpus/timeslices.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// 1 req/s for 3h; minutes 61-90 (slices 12-17) a tenth failing.
	bad := func(m int) bool { return m > 60 && m <= 90 }
	in := []inputSeries{
		{`api_requests_total{code="500"}`, byMinute(180, func(m int) float64 {
			if bad(m) {
				return 6
			}
			return 0
		}).values(time.Minute)},
		{`api_requests_total{code="200"}`, byMinute(180, func(m int) float64 {
			if bad(m) {
				return 54
			}
			return 60
		}).values(time.Minute)},
	}
	e, err := NewEngine(Config{SLOs: slos, Querier: feedSeries(t, in, time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	sts, err := e.EvaluateAt(context.Background(), time.UnixMilli((3 * time.Hour).Milliseconds()))
	if err != nil {
		t.Fatal(err)
	}
	st := sts[0]
	// Slices end at 5m ... 3h: 36, 6 of them bad.
	if st.Budgeting != Timeslices || st.Events != 36 || st.BadEvents != 6 || st.SLI == nil || math.Abs(*st.SLI-30.0/36) > 1e-9 {
		t.Errorf("status: budgeting %q, %v slices, %v bad, SLI %v", st.Budgeting, st.Events, st.BadEvents, st.SLI)
	}
	for _, tr := range st.Tiers {
		if tr.Name == "ticket-3d" && math.Abs(tr.LongEvents-180*60) > 1 {
			t.Errorf("ticket-3d: %v events in its long window, want %d", tr.LongEvents, 180*60)
		}
	}
}
