package api

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{"1700000000", time.Unix(1700000000, 0), false},
		{"1700000000.123", time.Unix(1700000000, 123e6), false},
		{"1700000000.1234", time.Unix(1700000000, 123e6), false}, // milliseconds, as stored
		{"-1.5", time.Unix(-2, 500e6), false},
		{"2026-11-24T04:00:00Z", time.Date(2026, 11, 24, 4, 0, 0, 0, time.UTC), false},
		{"2026-11-24T05:00:00.5+01:00", time.Date(2026, 11, 24, 4, 0, 0, 500e6, time.UTC), false},
		{minTimeFormatted, minTime, false},
		{maxTimeFormatted, maxTime, false},
		{"", time.Time{}, true},
		{"now", time.Time{}, true},
		{"NaN", time.Time{}, true},
		{"+Inf", time.Time{}, true},
		{"1e300", time.Time{}, true},
	}
	for _, tc := range tests {
		got, err := parseTime(tc.in)
		if (err != nil) != tc.wantErr || !tc.wantErr && !got.Equal(tc.want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"15", 15 * time.Second, false},
		{"0.5", 500 * time.Millisecond, false},
		{"1m30s", 90 * time.Second, false},
		{"1d", 24 * time.Hour, false},
		{"1w", 7 * 24 * time.Hour, false},
		{"-5", -5 * time.Second, false},
		{"", 0, true},
		{"5 minutes", 0, true},
		{"1e20", 0, true},
		{"NaN", 0, true},
	}
	for _, tc := range tests {
		got, err := parseDuration(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"1700000000.123", "2026-11-24T04:00:00Z", "-9e18", "NaN", minTimeFormatted, "1e300", "0x1p-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseTime(s)
		if err != nil {
			return
		}
		// Whatever is accepted converts to milliseconds and back without
		// overflow, as the store needs.
		ms := got.UnixMilli()
		if back := time.UnixMilli(ms); got.Sub(back) >= time.Millisecond || back.Sub(got) >= time.Millisecond {
			t.Fatalf("parseTime(%q) = %v does not round-trip through milliseconds (%v)", s, got, back)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"15", "1m30s", "1d", "-5", "1e20", "NaN", "0.001", "5y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseDuration(s) // must not panic
	})
}

// FuzzQueryParams drives the range-query handler with arbitrary
// parameters: every answer is a success or a 4xx/503 envelope, never a
// panic or a 500.
func FuzzQueryParams(f *testing.F) {
	f.Add("1700000000", "1700003600", "60", "10", "1s")
	f.Add("-9e18", "9e18", "1e-9", "-1", "NaN")
	f.Add("2026-11-24T04:00:00Z", "x", "1m", "", "")
	srv, err := New(Config{AllowAnonymous: RoleViewer}, Sources{Store: newTestStore(f)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, start, end, step, limit, timeout string) {
		q := url.Values{"query": {"1"}, "start": {start}, "end": {end}, "step": {step}, "limit": {limit}, "timeout": {timeout}}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/query_range?"+q.Encode(), nil))
		switch rec.Code {
		case 200, 400, 503:
		default:
			t.Fatalf("status %d for %v: %s", rec.Code, q, rec.Body)
		}
	})
}
