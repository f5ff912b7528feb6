package slo

import (
	"testing"
	"time"
)

func TestCalendarPeriodStart(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	utc := func(s string) time.Time {
		v, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name  string
		p     CalendarPeriod
		at    time.Time
		start time.Time
	}{
		{"month from the 15th, after it", CalendarPeriod{Months: 1, Start: utc("2024-01-15 00:00")}, utc("2024-03-20 12:00"), utc("2024-03-15 00:00")},
		{"month from the 15th, before it", CalendarPeriod{Months: 1, Start: utc("2024-01-15 00:00")}, utc("2024-03-10 12:00"), utc("2024-02-15 00:00")},
		{"month from the 15th, before the start", CalendarPeriod{Months: 1, Start: utc("2024-01-15 00:00")}, utc("2023-11-01 00:00"), utc("2023-10-15 00:00")},
		{"month from the 31st, in April", CalendarPeriod{Months: 1, Start: utc("2024-01-31 00:00")}, utc("2024-05-10 00:00"), utc("2024-04-30 00:00")},
		{"UTC month without a start", CalendarPeriod{Months: 1}, utc("2026-12-06 01:00"), utc("2026-12-01 00:00")},
		{"quarter", CalendarPeriod{Months: 3, Start: utc("2024-01-01 00:00")}, utc("2024-08-20 00:00"), utc("2024-07-01 00:00")},
		{"exactly at a start", CalendarPeriod{Months: 1, Start: utc("2024-01-15 00:00")}, utc("2024-06-15 00:00"), utc("2024-06-15 00:00")},
		// 10 March 2024: New York moves to daylight time; the week still
		// starts at local midnight on Monday (04:00 UTC, not 05:00).
		{"week in New York across DST", CalendarPeriod{Days: 7, Start: time.Date(2024, 1, 1, 0, 0, 0, 0, ny)}, utc("2024-03-13 12:00"), utc("2024-03-11 04:00")},
		{"week in New York in winter", CalendarPeriod{Days: 7, Start: time.Date(2024, 1, 1, 0, 0, 0, 0, ny)}, utc("2024-01-10 03:00"), utc("2024-01-08 05:00")},
		{"day", CalendarPeriod{Days: 1, Start: utc("2024-01-01 06:00")}, utc("2024-02-02 05:00"), utc("2024-02-01 06:00")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.p.PeriodStart(tc.at)
			if !got.Equal(tc.start) {
				t.Errorf("PeriodStart(%s) = %s, want %s", tc.at, got.UTC(), tc.start.UTC())
			}
			s := SLO{Calendar: true, Period: tc.p, Window: tc.p.nominal()}
			if w := s.SLOWindow(tc.at); tc.at.After(tc.start) && w != tc.at.Sub(tc.start) {
				t.Errorf("SLOWindow = %v, want %v", w, tc.at.Sub(tc.start))
			}
		})
	}
}

// A calendar window's startTime and timeZone are honoured, not read as the
// 1st of a UTC month.
func TestCalendarWindowFromFile(t *testing.T) {
	res, err := Read("testdata/openslo/billing-calendar.yaml", "testdata/openslo/search-list.yaml", "testdata/openslo/frontend-sli.yaml")
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]SLO{}
	for _, s := range res.SLOs {
		by[s.Name] = s
	}
	billing := by["billing-monthly"]
	at := time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)
	if got, want := billing.SLOWindow(at), at.Sub(time.Date(2026, 11, 15, 0, 0, 0, 0, time.UTC)); got != want {
		t.Errorf("billing (monthly from the 15th): window %v at %s, want %v", got, at, want)
	}
	search := by["search-latency-weekly"]
	if search.Period.Days != 7 || search.Period.Start.Location().String() != "America/New_York" {
		t.Fatalf("search: period %+v", search.Period)
	}
	// Sunday 6 December 2026, 01:00 UTC is Saturday 20:00 in New York; the
	// week began on Monday 30 November, 05:00 UTC.
	if got, want := search.SLOWindow(at), at.Sub(time.Date(2026, 11, 30, 5, 0, 0, 0, time.UTC)); got != want {
		t.Errorf("search (weekly, New York): window %v, want %v", got, want)
	}
	for _, tr := range search.Tiers {
		if tr.Long > 7*24*time.Hour || tr.Factor < 1 {
			t.Errorf("search: tier %+v does not fit a week", tr)
		}
	}
}
