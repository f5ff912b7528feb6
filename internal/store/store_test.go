package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The TSDB's and net/http's process-wide helpers outlive a test.
		goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
	)
}

func openStore(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", dir, err)
	}
	return s
}

type sample struct {
	lset labels.Labels
	t    time.Time
	v    float64
}

func appendAll(t *testing.T, app storage.Appendable, samples []sample) {
	t.Helper()
	a := app.Appender(context.Background())
	for _, s := range samples {
		if _, err := a.Append(0, s.lset, s.t.UnixMilli(), s.v); err != nil {
			t.Fatalf("Append(%s, %s): %v", s.lset, s.t, err)
		}
	}
	if err := a.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func TestStoreQueryAndReopen(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().Truncate(time.Minute).Add(-10 * time.Minute)
	lossA := labels.FromStrings("__name__", "meshlens_rackpair_loss_ratio", "src_rack", "dc1-pod1-rack1-tor", "dst_rack", "dc1-pod1-rack2-tor")
	lossB := labels.FromStrings("__name__", "meshlens_rackpair_loss_ratio", "src_rack", "dc1-pod1-rack1-tor", "dst_rack", "dc1-pod2-rack1-tor")
	var samples []sample
	for i := range 10 {
		ts := base.Add(time.Duration(i) * time.Minute)
		samples = append(samples, sample{lossA, ts, float64(i) / 100}, sample{lossB, ts, 0.5})
	}

	s := openStore(t, dir, Options{Registerer: prometheus.NewRegistry()})
	appendAll(t, s, samples)

	check := func(t *testing.T, s *Store) {
		t.Helper()
		tests := []struct {
			name string
			expr string
			want float64
		}{
			{"last sample", `meshlens_rackpair_loss_ratio{dst_rack="dc1-pod1-rack2-tor"}`, 0.09},
			{"aggregation", `sum(meshlens_rackpair_loss_ratio)`, 0.59},
			{"max over time", `max_over_time(meshlens_rackpair_loss_ratio{dst_rack="dc1-pod1-rack2-tor"}[1h])`, 0.09},
			{"count", `count(meshlens_rackpair_loss_ratio)`, 2},
		}
		at := base.Add(9 * time.Minute)
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				res, err := s.Query(context.Background(), tc.expr, at)
				if err != nil {
					t.Fatalf("Query(%q): %v", tc.expr, err)
				}
				vec, ok := res.Value.(promql.Vector)
				if !ok || len(vec) != 1 {
					t.Fatalf("Query(%q) = %v, want one-element vector", tc.expr, res.Value)
				}
				if got := vec[0].F; fmt.Sprintf("%.6f", got) != fmt.Sprintf("%.6f", tc.want) {
					t.Errorf("Query(%q) = %v, want %v", tc.expr, got, tc.want)
				}
			})
		}
		res, err := s.QueryRange(context.Background(), `meshlens_rackpair_loss_ratio`, base, base.Add(9*time.Minute), time.Minute)
		if err != nil {
			t.Fatalf("QueryRange: %v", err)
		}
		m, ok := res.Value.(promql.Matrix)
		if !ok || len(m) != 2 || len(m[0].Floats) != 10 || len(m[1].Floats) != 10 {
			t.Fatalf("QueryRange = %v, want 2 series of 10 points", res.Value)
		}
	}
	check(t, s)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// A restart on the same directory keeps history (WAL replay).
	s2 := openStore(t, dir, Options{Registerer: prometheus.NewRegistry()})
	defer s2.Close()
	check(t, s2)
	if got := s2.HeadSeries(); got != 2 {
		t.Errorf("HeadSeries after reopen = %d, want 2", got)
	}
}

func TestStoreOutOfOrder(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := openStore(t, t.TempDir(), Options{Registerer: reg, OutOfOrderWindow: time.Hour})
	defer s.Close()
	lset := labels.FromStrings("__name__", "meshlens_link_loss_ratio", "link", "dc1-pod1-leaf2--dc1-spine3")
	now := time.Now()
	appendAll(t, s, []sample{{lset, now, 1}})

	tests := []struct {
		name    string
		at      time.Time
		wantErr error
	}{
		{"late rollup within the window lands", now.Add(-10 * time.Minute), nil},
		{"too old is rejected", now.Add(-3 * time.Hour), storage.ErrTooOldSample},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := s.Appender(context.Background())
			_, err := a.Append(0, lset, tc.at.UnixMilli(), 2)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Append at %s: err = %v, want %v", tc.at, err, tc.wantErr)
			}
			if err := a.Commit(); err != nil {
				t.Fatalf("Commit: %v", err)
			}
		})
	}
	res, err := s.Query(context.Background(), `count_over_time(meshlens_link_loss_ratio[30m])`, now)
	if err != nil {
		t.Fatal(err)
	}
	if vec := res.Value.(promql.Vector); len(vec) != 1 || vec[0].F != 2 {
		t.Errorf("count_over_time = %v, want 2 (in-order + late sample)", vec)
	}
	if got := testutil.ToFloat64(s.metrics.appended.WithLabelValues("rejected")); got != 1 {
		t.Errorf("rejected samples = %v, want 1", got)
	}
	if got := testutil.ToFloat64(s.metrics.appended.WithLabelValues("committed")); got != 2 {
		t.Errorf("committed samples = %v, want 2", got)
	}
}

func TestStoreQueryErrors(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	defer s.Close()
	now := time.Now()
	tests := []struct {
		name string
		run  func() error
	}{
		{"bad promql", func() error { _, err := s.Query(context.Background(), `sum(`, now); return err }},
		{"zero step", func() error {
			_, err := s.QueryRange(context.Background(), `up`, now.Add(-time.Hour), now, 0)
			return err
		}},
		{"end before start", func() error {
			_, err := s.QueryRange(context.Background(), `up`, now, now.Add(-time.Hour), time.Minute)
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); err == nil {
				t.Fatal("want error")
			}
		})
	}
}

func BenchmarkAppendCommit(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	series := make([]labels.Labels, 1000)
	for i := range series {
		series[i] = labels.FromStrings("__name__", "meshlens_rackpair_loss_ratio", "src_rack", fmt.Sprintf("r%d", i%40), "dst_rack", fmt.Sprintf("r%d", i/40))
	}
	ts := time.Now().UnixMilli()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		a := s.Appender(context.Background())
		for _, l := range series {
			if _, err := a.Append(0, l, ts+int64(i)*1000, 0.01); err != nil {
				b.Fatal(err)
			}
		}
		if err := a.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(series)), "samples/op")
}

func TestRunWithoutRemoteWriteStops(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	defer s.Close()
	if s.RemoteWriter() != nil {
		t.Fatal("RemoteWriter without a URL")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open("", Options{}); err == nil {
		t.Error("Open(\"\"): want error")
	}
	reg := prometheus.NewRegistry()
	if _, err := Open(t.TempDir(), Options{Registerer: reg, RemoteWrite: RemoteWriteConfig{URL: "gopher://x"}}); err == nil {
		t.Error("Open with a bad remote write URL: want error")
	}
	// The failed Open left the registry clean: this one succeeds. A second
	// store on the same registry collides, and Open says so instead of
	// panicking.
	s := openStore(t, t.TempDir(), Options{Registerer: reg})
	defer s.Close()
	if s2, err := Open(t.TempDir(), Options{Registerer: reg}); err == nil {
		s2.Close()
		t.Error("second Open on one registry: want error")
	}
}
