package slo

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	// Calendar windows name IANA time zones; the binary must not depend on
	// the host having a zoneinfo database.
	_ "time/tzdata"
)

// CalendarPeriod is a calendar SLO window: periods of Months months or Days
// days (exactly one is set), the first starting at Start, in Start's time
// zone. The budget is spent from the start of the period holding now.
type CalendarPeriod struct {
	Months, Days int
	Start        time.Time
}

// calendarEpoch anchors calendar periods whose start is not given: months,
// quarters and days start at midnight on 1 January 2001, weeks on Monday
// (1 January 2001 was a Monday).
var calendarEpoch = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)

// PeriodStart is the start of the period holding t.
func (p CalendarPeriod) PeriodStart(t time.Time) time.Time {
	start := p.Start
	if start.IsZero() {
		start = calendarEpoch
	}
	step := func(n int) time.Time {
		if p.Months > 0 {
			return addMonths(start, n*p.Months)
		}
		return start.AddDate(0, 0, n*max(p.Days, 1))
	}
	// A first guess from elapsed time, then walk to the period holding t
	// (months and days vary in length; time zones shift by an hour).
	var n int
	if p.Months > 0 {
		tl := t.In(start.Location())
		n = ((tl.Year()-start.Year())*12 + int(tl.Month()-start.Month())) / p.Months
	} else {
		n = int(t.Sub(start).Hours() / 24 / float64(max(p.Days, 1)))
	}
	for step(n).After(t) {
		n--
	}
	for !step(n + 1).After(t) {
		n++
	}
	return step(n)
}

// addMonths adds n months to t keeping its day of month, or the last day
// of a shorter month (a period starting on the 31st starts on 30 April).
func addMonths(t time.Time, n int) time.Time {
	y, m, d := t.Date()
	first := time.Date(y, m+time.Month(n), 1, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
	last := first.AddDate(0, 1, -1).Day()
	return time.Date(first.Year(), first.Month(), min(d, last), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
}

// String names the period the way OpenSLO writes it (1M, 1w, 1Q, 3d).
func (p CalendarPeriod) String() string {
	switch {
	case p.Months%3 == 0 && p.Months > 0:
		return strconv.Itoa(p.Months/3) + "Q"
	case p.Months > 0:
		return strconv.Itoa(p.Months) + "M"
	case p.Days%7 == 0:
		return strconv.Itoa(p.Days/7) + "w"
	}
	return strconv.Itoa(p.Days) + "d"
}

// nominal is the length of one period, for tier windows and factors and
// for the rolling budget of the generated Prometheus rules.
func (p CalendarPeriod) nominal() time.Duration {
	if p.Months > 0 {
		return time.Duration(p.Months) * BaseWindow
	}
	return time.Duration(p.Days) * 24 * time.Hour
}

// parseOpenDuration reads an OpenSLO duration: a positive integer and one
// of the units m, h, d, w, M, Q, Y.
func parseOpenDuration(v string) (n int, unit byte, err error) {
	v = strings.TrimSpace(v)
	if len(v) < 2 {
		return 0, 0, fmt.Errorf("%q: want a number and a unit, like 28d, 1w or 1M", v)
	}
	unit = v[len(v)-1]
	n, err = strconv.Atoi(v[:len(v)-1])
	if err != nil || n <= 0 || !strings.ContainsRune("mhdwMQY", rune(unit)) {
		return 0, 0, fmt.Errorf("%q: want a positive number and one of the units m, h, d, w, M, Q, Y (like 28d, 1w or 1M)", v)
	}
	return n, unit, nil
}

// parseCalendarPeriod reads the duration of an OpenSLO calendar window.
func parseCalendarPeriod(v string) (CalendarPeriod, error) {
	n, unit, err := parseOpenDuration(v)
	if err != nil {
		return CalendarPeriod{}, err
	}
	var p CalendarPeriod
	switch unit {
	case 'd':
		p.Days = n
	case 'w':
		p.Days = 7 * n
	case 'M':
		p.Months = n
	case 'Q':
		p.Months = 3 * n
	default:
		return p, fmt.Errorf("%q: a calendar window is counted in days (d), weeks (w), months (M) or quarters (Q)", v)
	}
	if p.nominal() > maxWindow {
		return p, fmt.Errorf("%q: at most 90 days (1Q): a budget is counted over the store's recent history", v)
	}
	return p, nil
}

// startLayouts are the forms of OpenSLO's calendar.startTime.
var startLayouts = []string{"2006-01-02 15:04:05", time.RFC3339, "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02"}

// parseCalendarStart reads startTime in time zone tz (UTC when empty).
func parseCalendarStart(start, tz string) (time.Time, error) {
	loc := time.UTC
	if tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil || strings.EqualFold(tz, "local") {
			return time.Time{}, fmt.Errorf("timeZone %q: want an IANA time zone like UTC or America/New_York", tz)
		}
		loc = l
	}
	if start == "" {
		return time.Date(2001, 1, 1, 0, 0, 0, 0, loc), nil
	}
	for _, l := range startLayouts {
		if t, err := time.ParseInLocation(l, strings.TrimSpace(start), loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("startTime %q: want a date and time like 2024-01-15 00:00:00 (in timeZone)", start)
}
