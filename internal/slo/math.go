package slo

import (
	"math"
	"time"
)

// Counts are the events of an SLI over one window.
type Counts struct {
	Bad, Total float64
}

// ErrorRatio is the share of bad events, NaN without events.
func (c Counts) ErrorRatio() float64 {
	if !(c.Total > 0) {
		return math.NaN()
	}
	return c.Bad / c.Total
}

// BurnRate is how many times faster than allowed the budget burns in this
// window: the error ratio over the budget share (1 - target). 1 spends
// exactly the budget over the SLO window. NaN without events.
func BurnRate(c Counts, target float64) float64 {
	return c.ErrorRatio() / (1 - target)
}

// BudgetRemaining is the share of the window's error budget not spent, for
// the counts of the whole SLO window: 1 - bad / ((1 - target) * total).
// Negative when overspent, NaN without events.
func BudgetRemaining(c Counts, target float64) float64 {
	if !(c.Total > 0) {
		return math.NaN()
	}
	return 1 - c.Bad/((1-target)*c.Total)
}

// WindowEvents is how many events the whole SLO window holds: what it
// holds, or, while it is younger than its length (a new SLO or server,
// data minutes old in a week's window), what it will hold at the recent
// rate, the highest of the rates over recent (events in the windows
// shorter than the SLO window, by length). Without it, three minutes of
// 2 % loss in a 99.9 % week read as a budget spent twenty times over.
func WindowEvents(whole Counts, window time.Duration, recent map[time.Duration]Counts) float64 {
	total := whole.Total
	for w, c := range recent {
		if w > 0 && w < window && c.Total > 0 {
			total = math.Max(total, c.Total*float64(window)/float64(w))
		}
	}
	return total
}

// BudgetConsumed is the share of the whole SLO window's budget that bad
// events spent, given the window's total events.
func BudgetConsumed(bad, windowTotal, target float64) float64 {
	if !(windowTotal > 0) {
		return math.NaN()
	}
	return bad / ((1 - target) * windowTotal)
}

// Firing says whether tier t's condition holds: both windows burn faster
// than its factor and the long window holds at least minEvents events. NaN
// (no events) never fires.
func (t Tier) Firing(long, short Counts, target, minEvents float64) bool {
	return t.Burning(long, short, target) && long.Total >= minEvents
}

// Burning says whether both windows of tier t burn faster than its factor.
func (t Tier) Burning(long, short Counts, target float64) bool {
	return BurnRate(long, target) > t.Factor && BurnRate(short, target) > t.Factor
}
