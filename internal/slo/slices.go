package slo

import (
	"fmt"
	"time"
)

// Time-slice budgets (OpenSLO's Timeslices and RatioTimeslices). The
// window is cut into slices of TimeSlice; a slice with no events is not
// counted. A Timeslices slice is bad when its good ratio is below
// TimeSliceTarget and the budget is a share of the slices; a
// RatioTimeslices slice counts its error ratio, so the SLI is the average
// of the slices' good ratios. Either way, over a window w:
//
//	bad units   = sum over the slices of w of their badness (0 or 1, or the error ratio)
//	units       = the slices of w holding events
//	burn rate   = bad units / units / (1 - target)
//
// and the budget, burn-rate tiers and the rest of the package's arithmetic
// work on these units as on events. The minimum-events guard still counts
// events (the slices are not what makes a window trustworthy).
//
// One PromQL expression judges the slices, for meshlens's engine and for
// the generated Prometheus rules alike: a subquery
// (badness)[w:TimeSlice] whose steps Prometheus aligns to multiples of
// TimeSlice since the epoch, so that every evaluator, at any evaluation
// time, judges the same fixed slices. Recording each slice's badness in a
// rule would be cheaper to read, but it starts empty (a 30-day budget would
// be wrong for 30 days after the rules are loaded), its samples fall at
// the rule group's evaluation times and not on slice boundaries, and
// meshlens's engine, which reads the store and not Prometheus's recorded
// series, could not share it.

// sliceBadness is the PromQL of the badness of the slice ending at the
// evaluation time, empty when the slice holds no events.
func (s *SLO) sliceBadness() string {
	sw := s.TimeSlice
	bad, total := s.BadQuery(sw), s.TotalQuery(sw)
	if s.countsBadEvents() {
		// No series of bad events in a slice that has events: nothing bad
		// happened in it. (Not "or vector(0)": that makes a sample at
		// every step of a month-long subquery, data or not.)
		bad = "(" + bad + " or 0 * " + total + ")"
	}
	ratio := "(" + bad + " / " + total + ")"
	if s.Budgeting == Timeslices {
		ratio = "(" + ratio + " > bool " + fmtFloat(1-s.TimeSliceTarget) + ")"
	}
	return "(" + ratio + " and (" + total + " > 0))"
}

// countsBadEvents tells whether s reads a counter of bad events (rather
// than computing them as total - good): a missing one is zero.
func (s *SLO) countsBadEvents() bool {
	return s.SLI.Kind == ProbeAvailability || (s.SLI.Kind == Ratio && s.SLI.Bad != "")
}

// sliceRange is the range of a subquery over the slices of w. Prometheus 3
// takes a subquery's steps in (t-w, t], Prometheus 2 in [t-w, t], so at a
// t on a slice boundary (every evaluation of a clock ticking in whole
// minutes) 2 would count one slice more, the one ending where the window
// starts. A millisecond less than w leaves that slice out of both; they
// differ only when t - w falls one millisecond before a boundary.
func sliceRange(w time.Duration) string {
	return promDuration(w - time.Millisecond)
}

func (s *SLO) sliceSubquery(fn string, w time.Duration) string {
	return fmt.Sprintf("%s(%s[%s:%s])", fn, s.sliceBadness(), sliceRange(w), promDuration(s.TimeSlice))
}

// BudgetBadQuery is the PromQL of the bad units the budget counts over
// window w: bad events, or the badness of the time slices.
func (s *SLO) BudgetBadQuery(w time.Duration) string {
	if s.Budgeting == Occurrences {
		return s.BadQuery(w)
	}
	return s.sliceSubquery("sum_over_time", w)
}

// BudgetTotalQuery is the PromQL of the units the budget counts over
// window w: events, or time slices holding events.
func (s *SLO) BudgetTotalQuery(w time.Duration) string {
	if s.Budgeting == Occurrences {
		return s.TotalQuery(w)
	}
	return s.sliceSubquery("count_over_time", w)
}

// BudgetErrorRatioQuery is the PromQL of the share of bad units over
// window w, the error ratio burn rates are made of.
func (s *SLO) BudgetErrorRatioQuery(w time.Duration) string {
	if s.Budgeting == Occurrences {
		return s.ErrorRatioQuery(w)
	}
	return s.sliceSubquery("avg_over_time", w)
}

// MinTimeSlice bounds a slice from below: increase() needs two samples in
// it, and a minute holds several scrapes at the usual intervals.
const MinTimeSlice = time.Minute

// fitSlices makes default tiers hold whole slices: each window is rounded
// up to a multiple of the slice, a long window at least two short ones
// (the window holds at least 12 slices, see checkTimeSlice, so they fit).
func fitSlices(tiers []Tier, slice time.Duration) {
	up := func(d time.Duration) time.Duration { return (d + slice - 1) / slice * slice }
	for i := range tiers {
		tiers[i].Short = up(tiers[i].Short)
		tiers[i].Long = max(up(tiers[i].Long), 2*tiers[i].Short)
	}
}

// checkTimeSlice says what is wrong with slice for an SLO window w.
func checkTimeSlice(slice, w time.Duration) error {
	switch {
	case slice < MinTimeSlice:
		return fmt.Errorf("%s: a slice is at least %s (increase() needs two samples in one; with a 1m scrape interval, use 5m)", promDuration(slice), promDuration(MinTimeSlice))
	case slice%time.Second != 0:
		return fmt.Errorf("%s: want whole seconds, like 1m or 5m", promDuration(slice))
	case w > 0 && slice*12 > w:
		return fmt.Errorf("%s: the SLO window (%s) must hold at least 12 slices, so that tiers can burn on their share; use at most %s", promDuration(slice), promDuration(w), promDuration(w/12))
	}
	return nil
}
