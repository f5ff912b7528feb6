package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/testkit/tsdbtest"
)

// tsdbPeers are the external TSDBs a remote store is proven against.
var tsdbPeers = []struct {
	name  string
	start func(testing.TB, ...string) string
	// flush makes what was written searchable, nil when it is at once.
	flush func(testing.TB, string)
}{
	{"prometheus", tsdbtest.StartPrometheus, nil},
	{"victoriametrics", tsdbtest.StartVictoriaMetrics, tsdbtest.FlushVictoriaMetrics},
}

// Label values a selector must escape to select exactly.
const (
	quotedNote    = `say "hi"`
	backslashNote = `C:\mesh\lens\`
)

// remoteTestSamples is a quarter hour of what an aggregator writes, every
// 15s: probe counters of four rack pairs, two with label values that need
// escaping, and a classic latency histogram.
func remoteTestSamples(base time.Time) []sample {
	counters := []labels.Labels{
		labels.FromStrings("__name__", "meshlens_test_probes_total", "src_rack", "r1", "dst_rack", "r2", "note", quotedNote),
		labels.FromStrings("__name__", "meshlens_test_probes_total", "src_rack", "r1", "dst_rack", "r3", "note", backslashNote),
		labels.FromStrings("__name__", "meshlens_test_probes_total", "src_rack", "r2", "dst_rack", "r1", "note", "line\nbreak"),
		labels.FromStrings("__name__", "meshlens_test_probes_total", "src_rack", "r2", "dst_rack", "r3"),
	}
	les := []string{"0.001", "0.01", "0.1", "+Inf"}
	var out []sample
	for i := range 60 {
		ts := base.Add(time.Duration(i) * 15 * time.Second)
		for j, l := range counters {
			out = append(out, sample{l, ts, float64(i * (j + 1) * 7)})
		}
		for j, le := range les {
			l := labels.FromStrings("__name__", "meshlens_test_latency_seconds_bucket", "src_rack", "r1", "le", le)
			out = append(out, sample{l, ts, float64(i * (j + 1) * (j + 2))})
		}
	}
	return out
}

func openRemoteStore(t *testing.T, opts RemoteOptions) *Store {
	t.Helper()
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	s, err := OpenRemote(opts)
	if err != nil {
		t.Fatalf("OpenRemote(%+v): %v", opts, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// selectAll reads the series matching ms in [mint, maxt] of q as text, one
// line per series with its samples: easy to compare and to read in a diff.
func selectAll(t *testing.T, q storage.Queryable, mint, maxt int64, ms ...*labels.Matcher) ([]string, error) {
	t.Helper()
	qr, err := q.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	defer qr.Close()
	set := qr.Select(context.Background(), true, nil, ms...)
	var out []string
	var it chunkenc.Iterator
	for set.Next() {
		s := set.At()
		var b strings.Builder
		b.WriteString(s.Labels().String())
		it = s.Iterator(it)
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			fmt.Fprintf(&b, " %d=%g", ts, v)
		}
		if err := it.Err(); err != nil {
			return nil, err
		}
		out = append(out, b.String())
	}
	return out, set.Err()
}

// TestRemoteStore writes through OpenRemote into real Prometheus and
// VictoriaMetrics and reads back: raw samples, labels, and PromQL results
// that must equal the embedded store's over the same samples.
func TestRemoteStore(t *testing.T) {
	base := time.Now().Add(-30 * time.Minute).Truncate(time.Minute)
	in := remoteTestSamples(base)
	mint, maxt := base.UnixMilli(), base.Add(15*time.Minute).UnixMilli()

	local := openStore(t, t.TempDir(), Options{Registerer: prometheus.NewRegistry()})
	t.Cleanup(func() { local.Close() }) // after the parallel subtests
	appendAll(t, local, in)

	for _, peer := range tsdbPeers {
		t.Run(peer.name, func(t *testing.T) {
			t.Parallel()
			url := peer.start(t)
			remote := openRemoteStore(t, RemoteOptions{QueryURL: url, WriteURL: url + "/api/v1/write", MaxSamplesPerSend: 100})
			flush := func() {
				if peer.flush != nil {
					peer.flush(t, url)
				}
			}
			appendAll(t, remote, in)
			flush()
			metrics := remote.queryable.(*queryAPI).metrics
			if got := testutil.ToFloat64(metrics.writeSamples); got != float64(len(in)) {
				t.Errorf("remote_write_samples_total = %v, want %d", got, len(in))
			}
			all := labels.MustNewMatcher(labels.MatchRegexp, "__name__", "meshlens_test_.+")
			want, err := selectAll(t, local, mint, maxt, all)
			if err != nil {
				t.Fatal(err)
			}
			testkit.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
				got, err := selectAll(t, remote, mint, maxt, all)
				if err != nil {
					return err
				}
				if !slices.Equal(got, want) {
					return fmt.Errorf("remote select =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				return nil
			})

			t.Run("select", func(t *testing.T) { checkRemoteSelect(t, local, remote, mint, maxt) })
			t.Run("labels", func(t *testing.T) { checkRemoteLabels(t, local, remote, mint, maxt) })
			t.Run("promql", func(t *testing.T) { checkRemotePromQL(t, local, remote, base) })
			t.Run("recommit", func(t *testing.T) {
				// A commit that failed after some requests landed is retried
				// whole: the TSDB takes the duplicates and reads stay the same.
				appendAll(t, remote, in)
				flush()
				got, err := selectAll(t, remote, mint, maxt, all)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Errorf("select after re-commit =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				checkRemotePromQL(t, local, remote, base)
			})
			if t.Failed() {
				return
			}
			for _, r := range []string{reasonHTTP, reasonStatus, reasonDecode, reasonTooLarge, reasonTimeout} {
				if got := testutil.ToFloat64(metrics.queryErrors.WithLabelValues(r)); got != 0 {
					t.Errorf("query errors{reason=%q} = %v after successful queries", r, got)
				}
			}
			if got := testutil.ToFloat64(metrics.queries); got == 0 {
				t.Error("remote_queries_total = 0 after queries")
			}
		})
	}
}

func checkRemoteSelect(t *testing.T, local, remote *Store, mint, maxt int64) {
	name := labels.MustNewMatcher(labels.MatchEqual, "__name__", "meshlens_test_probes_total")
	tests := []struct {
		name       string
		matcher    *labels.Matcher
		wantSeries int
		mint       int64
	}{
		{"equal, quotes", labels.MustNewMatcher(labels.MatchEqual, "note", quotedNote), 1, mint},
		{"equal, backslashes", labels.MustNewMatcher(labels.MatchEqual, "note", backslashNote), 1, mint},
		{"equal, newline", labels.MustNewMatcher(labels.MatchEqual, "note", "line\nbreak"), 1, mint},
		{"not equal", labels.MustNewMatcher(labels.MatchNotEqual, "src_rack", "r1"), 2, mint},
		{"regexp, backslash", labels.MustNewMatcher(labels.MatchRegexp, "note", `C:\\mesh.*|say ".*`), 2, mint},
		{"not regexp", labels.MustNewMatcher(labels.MatchNotRegexp, "dst_rack", "r[23]"), 1, mint},
		{"empty value matches missing label", labels.MustNewMatcher(labels.MatchEqual, "note", ""), 1, mint},
		// The range is inclusive at both ends, to the millisecond.
		{"range of one sample", labels.MustNewMatcher(labels.MatchEqual, "dst_rack", "r3"), 2, maxt - 30_000 + 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, err := selectAll(t, local, tc.mint, maxt, name, tc.matcher)
			if err != nil {
				t.Fatal(err)
			}
			got, err := selectAll(t, remote, tc.mint, maxt, name, tc.matcher)
			if err != nil {
				t.Fatalf("remote select %s: %v", tc.matcher, err)
			}
			if len(want) != tc.wantSeries {
				t.Fatalf("local select %s: %d series, want %d: the test data is wrong", tc.matcher, len(want), tc.wantSeries)
			}
			if !slices.Equal(got, want) {
				t.Errorf("remote select %s =\n%s\nwant\n%s", tc.matcher, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func checkRemoteLabels(t *testing.T, local, remote *Store, mint, maxt int64) {
	ctx := context.Background()
	probes := labels.MustNewMatcher(labels.MatchEqual, "__name__", "meshlens_test_probes_total")
	src1 := labels.MustNewMatcher(labels.MatchEqual, "src_rack", "r1")
	tests := []struct {
		name string
		run  func(storage.Querier) ([]string, annotations.Annotations, error)
	}{
		{"names", func(q storage.Querier) ([]string, annotations.Annotations, error) { return q.LabelNames(ctx, nil) }},
		{"names of matching series", func(q storage.Querier) ([]string, annotations.Annotations, error) {
			return q.LabelNames(ctx, nil, probes, src1)
		}},
		{"values", func(q storage.Querier) ([]string, annotations.Annotations, error) {
			return q.LabelValues(ctx, "note", nil)
		}},
		{"values of matching series", func(q storage.Querier) ([]string, annotations.Annotations, error) {
			return q.LabelValues(ctx, "dst_rack", nil, probes, src1)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lq, err := local.Querier(mint, maxt)
			if err != nil {
				t.Fatal(err)
			}
			defer lq.Close()
			want, _, err := tc.run(lq)
			if err != nil || len(want) == 0 {
				t.Fatalf("local: %v, %v: the test data is wrong", want, err)
			}
			rq, err := remote.Querier(mint, maxt)
			if err != nil {
				t.Fatal(err)
			}
			defer rq.Close()
			got, _, err := tc.run(rq)
			if err != nil {
				t.Fatalf("remote: %v", err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("remote = %q, want %q", got, want)
			}
		})
	}
	t.Run("values with a limit", func(t *testing.T) {
		rq, err := remote.Querier(mint, maxt)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := rq.LabelValues(ctx, "le", &storage.LabelHints{Limit: 2})
		if err != nil || len(got) != 2 {
			t.Errorf("LabelValues(le, limit 2) = %q, %v; want 2 values", got, err)
		}
	})
}

// checkRemotePromQL compares PromQL over the remote store with PromQL over
// the embedded one: the same engine over the same samples must agree.
func checkRemotePromQL(t *testing.T, local, remote *Store, base time.Time) {
	ctx := context.Background()
	exprs := []string{
		`sum by (src_rack) (increase(meshlens_test_probes_total[5m]))`,
		`rate(meshlens_test_probes_total{note=~".+"}[2m])`,
		`last_over_time(meshlens_test_probes_total{note!=""}[10m])`,
		`histogram_quantile(0.9, sum by (le) (rate(meshlens_test_latency_seconds_bucket[5m])))`,
		`count_over_time(meshlens_test_probes_total[1h])`,
	}
	times := []time.Time{base.Add(5 * time.Minute), base.Add(10*time.Minute + 7*time.Second), base.Add(14*time.Minute + 45*time.Second)}
	for _, expr := range exprs {
		for _, at := range times {
			want, err := local.Query(ctx, expr, at)
			if err != nil {
				t.Fatalf("local Query(%q): %v", expr, err)
			}
			got, err := remote.Query(ctx, expr, at)
			if err != nil {
				t.Fatalf("remote Query(%q): %v", expr, err)
			}
			if w, g := resultText(want.Value), resultText(got.Value); g != w || w == "" {
				t.Errorf("Query(%q) at %s:\nremote %s\nlocal  %s", expr, at.Sub(base), g, w)
			}
		}
		want, err := local.QueryRange(ctx, expr, base, base.Add(15*time.Minute), time.Minute)
		if err != nil {
			t.Fatalf("local QueryRange(%q): %v", expr, err)
		}
		got, err := remote.QueryRange(ctx, expr, base, base.Add(15*time.Minute), time.Minute)
		if err != nil {
			t.Fatalf("remote QueryRange(%q): %v", expr, err)
		}
		if w, g := resultText(want.Value), resultText(got.Value); g != w || len(want.Value.(promql.Matrix)) == 0 {
			t.Errorf("QueryRange(%q):\nremote %s\nlocal  %s", expr, g, w)
		}
	}
}

// resultText prints a query result in label order: the engine's output
// order follows the storage's, which differs between TSDBs.
func resultText(v parser.Value) string {
	switch v := v.(type) {
	case promql.Vector:
		v = slices.Clone(v)
		slices.SortFunc(v, func(a, b promql.Sample) int { return labels.Compare(a.Metric, b.Metric) })
		return v.String()
	case promql.Matrix:
		v = slices.Clone(v)
		slices.SortFunc(v, func(a, b promql.Series) int { return labels.Compare(a.Metric, b.Metric) })
		return v.String()
	}
	return v.String()
}

// TestRemoteQueryErrors feeds the query path what a broken or hostile TSDB
// answers: each is an error naming the URL, counted under its reason.
func TestRemoteQueryErrors(t *testing.T) {
	matrix := func(n int) string {
		vals := strings.TrimSuffix(strings.Repeat(`[1700000000.5,"1"],`, n), ",")
		return `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"m"},"values":[` + vals + `]}]}}`
	}
	closed := closedURL(t)
	tests := []struct {
		name    string
		status  int
		body    string
		url     string // instead of a test server
		stall   bool
		reason  string
		wantErr string
	}{
		{name: "500", status: 500, body: "internal error", reason: reasonHTTP, wantErr: "500 Internal Server Error"},
		{name: "502 from a proxy", status: 502, body: "<html>bad gateway</html>", reason: reasonHTTP, wantErr: "502"},
		{name: "prometheus error body", status: 422, body: `{"status":"error","errorType":"execution","error":"query processing would load too many samples"}`, reason: reasonStatus, wantErr: "too many samples"},
		{name: "status error with 200", status: 200, body: `{"status":"error","errorType":"internal","error":"boom"}`, reason: reasonStatus, wantErr: "boom"},
		{name: "not json", status: 200, body: "this is not json", reason: reasonDecode, wantErr: "invalid character"},
		{name: "truncated json", status: 200, body: matrix(3)[:40], reason: reasonDecode, wantErr: "unexpected EOF"},
		{name: "bad sample value", status: 200, body: strings.Replace(matrix(1), `"1"`, `"one"`, 1), reason: reasonDecode, wantErr: "one"},
		{name: "vector instead of matrix", status: 200, body: `{"status":"success","data":{"resultType":"vector","result":[]}}`, reason: reasonDecode, wantErr: `"vector"`},
		{name: "native histograms", status: 200, body: `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"m"},"histograms":[[1700000000,{"count":"1","sum":"1","buckets":[[0,"0","1","1"]]}]]}]}}`, reason: reasonDecode, wantErr: "native histogram"},
		{name: "oversized", status: 200, body: matrix(1000), reason: reasonTooLarge, wantErr: "too large"},
		{name: "unreachable", url: closed, reason: reasonHTTP, wantErr: "connection refused"},
		{name: "timeout", stall: true, reason: reasonTimeout, wantErr: "deadline exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := tc.url
			if u == "" {
				release := make(chan struct{})
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if tc.stall {
						// Until the test ends: the server cannot see the
						// client give up on a request whose body it has not read.
						<-release
						return
					}
					w.WriteHeader(tc.status)
					fmt.Fprint(w, tc.body)
				}))
				defer srv.Close()
				defer close(release)
				u = srv.URL
			}
			s := openRemoteStore(t, RemoteOptions{QueryURL: u, Timeout: 200 * time.Millisecond, MaxResponseBytes: 4 << 10})
			_, err := selectAll(t, s, 0, 1_700_000_001_000, labels.MustNewMatcher(labels.MatchEqual, "__name__", "m"))
			if err == nil || !strings.Contains(err.Error(), u+"/api/v1/query") || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("select: err = %v, want one naming %s/api/v1/query and saying %q", err, u, tc.wantErr)
			}
			m := s.queryable.(*queryAPI).metrics
			for _, r := range []string{reasonHTTP, reasonStatus, reasonDecode, reasonTooLarge, reasonTimeout} {
				want := 0.0
				if r == tc.reason {
					want = 1
				}
				if got := testutil.ToFloat64(m.queryErrors.WithLabelValues(r)); got != want {
					t.Errorf("query errors{reason=%q} = %v, want %v", r, got, want)
				}
			}
			if got := testutil.ToFloat64(m.queries); got != 1 {
				t.Errorf("queries = %v, want 1", got)
			}
			// The engine and the label API surface the same failure.
			if _, err := s.Query(context.Background(), `m`, time.UnixMilli(1_700_000_000_000)); err == nil {
				t.Error("PromQL over the failing TSDB: want error")
			}
			q, _ := s.Querier(0, 1_700_000_000_000)
			if _, _, err := q.LabelNames(context.Background(), nil); err == nil {
				t.Error("LabelNames: want error")
			}
		})
	}
}

// closedURL is the URL of a loopback port nothing listens on.
func closedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

// TestRemoteCommit checks the synchronous write path against scripted
// receivers: split into bounded requests, retried a bounded number of
// times, nil only when everything was acknowledged.
func TestRemoteCommit(t *testing.T) {
	tests := []struct {
		name         string
		statuses     []int
		url          string
		wantErr      string
		wantRequests int
		wantReceived int
		wantReason   string
	}{
		{name: "split at the sample bound", wantRequests: 4, wantReceived: 25},
		{name: "5xx and 429 retried", statuses: []int{503, 429}, wantRequests: 6, wantReceived: 25},
		{name: "persistent 500 fails after bounded retries", statuses: slices.Repeat([]int{500}, 100), wantErr: "500", wantRequests: remoteWriteAttempts, wantReason: reasonStatus},
		{name: "4xx is not retried", statuses: []int{400}, wantErr: "400", wantRequests: 1, wantReason: reasonStatus},
		{name: "unreachable", url: closedURL(t), wantErr: "connection refused", wantReason: reasonHTTP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := &receiver{t: t, statuses: tc.statuses, got: map[string][]prompb.Sample{}}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			u := srv.URL + "/api/v1/write"
			if tc.url != "" {
				u = tc.url
			}
			s := openRemoteStore(t, RemoteOptions{QueryURL: srv.URL, WriteURL: u, MaxSamplesPerSend: 7, Timeout: 5 * time.Second})
			a := s.Appender(context.Background())
			for i := range 25 {
				if _, err := a.Append(0, labels.FromStrings("__name__", "m", "i", fmt.Sprint(i%3)), int64(i)*1000, float64(i)); err != nil {
					t.Fatal(err)
				}
			}
			err := a.Commit()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Commit: err = %v, want %q", err, tc.wantErr)
			}
			rc.mu.Lock()
			requests := rc.requests
			rc.mu.Unlock()
			if requests != tc.wantRequests {
				t.Errorf("receiver got %d requests, want %d", requests, tc.wantRequests)
			}
			if got := rc.samples(); got != tc.wantReceived {
				t.Errorf("receiver got %d samples, want %d", got, tc.wantReceived)
			}
			m := s.queryable.(*queryAPI).metrics
			if got := testutil.ToFloat64(m.writeSamples); got != float64(tc.wantReceived) {
				t.Errorf("write samples = %v, want %d", got, tc.wantReceived)
			}
			for _, r := range []string{reasonHTTP, reasonStatus, reasonTimeout} {
				want := 0.0
				if r == tc.wantReason {
					want = 1
				}
				if got := testutil.ToFloat64(m.writeErrors.WithLabelValues(r)); got != want {
					t.Errorf("write errors{reason=%q} = %v, want %v", r, got, want)
				}
			}
		})
	}
}

func TestRemoteCommitTimeout(t *testing.T) {
	var once sync.Once
	stalled, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(stalled) })
		<-release
	}))
	defer srv.Close()
	defer close(release)
	s := openRemoteStore(t, RemoteOptions{QueryURL: srv.URL, WriteURL: srv.URL, Timeout: 200 * time.Millisecond})
	a := s.Appender(context.Background())
	if _, err := a.Append(0, labels.FromStrings("__name__", "m"), 1000, 1); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(); err == nil || !isTimeout(err) {
		t.Fatalf("Commit to a stalled receiver: err = %v, want a timeout", err)
	}
	<-stalled
	m := s.queryable.(*queryAPI).metrics
	if got := testutil.ToFloat64(m.writeErrors.WithLabelValues(reasonTimeout)); got != 1 {
		t.Errorf("write errors{reason=timeout} = %v, want 1", got)
	}
}

func TestRemoteStoreReadOnlyAndRollback(t *testing.T) {
	rc := &receiver{t: t, got: map[string][]prompb.Sample{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()

	ro := openRemoteStore(t, RemoteOptions{QueryURL: srv.URL})
	a := ro.Appender(context.Background())
	if _, err := a.Append(0, labels.FromStrings("__name__", "m"), 1, 1); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Append on a read-only store: err = %v, want ErrReadOnly", err)
	}
	if err := a.Commit(); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Commit on a read-only store: err = %v, want ErrReadOnly", err)
	}

	s := openRemoteStore(t, RemoteOptions{QueryURL: srv.URL, WriteURL: srv.URL})
	a = s.Appender(context.Background())
	if _, err := a.Append(0, labels.FromStrings("__name__", "m"), 1, 1); err != nil {
		t.Fatal(err)
	}
	if err := a.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AppendHistogram(0, labels.FromStrings("__name__", "h"), 1, nil, nil); !errors.Is(err, ErrNotSupported) {
		t.Errorf("AppendHistogram: err = %v, want ErrNotSupported", err)
	}
	if got := rc.samples(); got != 0 {
		t.Errorf("receiver got %d samples after rollback, want 0", got)
	}

	// The rest of the Store works without a local TSDB.
	if s.HeadSeries() != 0 || s.RemoteWriter() != nil || s.Compact(context.Background()) != nil {
		t.Error("HeadSeries, RemoteWriter, Compact of a remote store: want 0, nil, nil")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestOpenRemoteErrors(t *testing.T) {
	for _, opts := range []RemoteOptions{
		{},
		{QueryURL: "ftp://x"},
		{QueryURL: "http://"},
		{QueryURL: "http://x", WriteURL: "not a url"},
	} {
		if _, err := OpenRemote(opts); err == nil {
			t.Errorf("OpenRemote(%+v): want error", opts)
		}
	}
	reg := prometheus.NewRegistry()
	openRemoteStore(t, RemoteOptions{QueryURL: "http://x", Registerer: reg})
	if _, err := OpenRemote(RemoteOptions{QueryURL: "http://x", Registerer: reg}); err == nil {
		t.Error("second OpenRemote on one registry: want error")
	}
}

// FuzzSelector checks that any matcher value survives the trip through a
// PromQL selector unchanged.
func FuzzSelector(f *testing.F) {
	for _, v := range []string{quotedNote, backslashNote, "line\nbreak", "", "\x00\xff", "`'\"", "ü"} {
		f.Add(v, uint8(0))
	}
	f.Fuzz(func(t *testing.T, v string, typ uint8) {
		mt := labels.MatchType(typ % 4)
		m, err := labels.NewMatcher(mt, "l", v)
		if err != nil {
			return // an invalid regexp: nothing to write as a selector
		}
		name := labels.MustNewMatcher(labels.MatchEqual, "__name__", "m")
		sel := selector([]*labels.Matcher{name, m})
		got, err := parser.NewParser(parser.Options{}).ParseMetricSelector(sel)
		if err != nil {
			t.Fatalf("parse %s: %v", sel, err)
		}
		if len(got) != 2 || got[1].Type != mt || got[1].Value != remoteMatcherValue(m) || got[1].Name != "l" {
			t.Fatalf("%q %s: parsed back as %v", v, mt, got)
		}
		if mt != labels.MatchRegexp || !utf8.ValidString(v) {
			return // a TSDB refuses a regexp of invalid UTF-8 with an error
		}
		// A TSDB without Prometheus 3's "." reads the value as Go's
		// regexp, anchored: it must match what the matcher matches.
		re, err := regexp.Compile("^(?:" + got[1].Value + ")$")
		if err != nil {
			t.Fatalf("%q sent as %q: %v", v, got[1].Value, err)
		}
		for _, s := range []string{v, "", "\n", "a\nb", ".0", strings.ReplaceAll(v, ".", "\n")} {
			if re.MatchString(s) != m.Matches(s) {
				t.Fatalf("%q sent as %q: matches %q %v, the matcher %v", v, got[1].Value, s, re.MatchString(s), m.Matches(s))
			}
		}
	})
}

func TestFormatTime(t *testing.T) {
	for ms, want := range map[int64]string{0: "0.000", 1: "0.001", 1_700_000_000_123: "1700000000.123", 999: "0.999", 1000: "1.000"} {
		if got := formatTime(ms); got != want {
			t.Errorf("formatTime(%d) = %q, want %q", ms, got, want)
		}
	}
	if got := clampTime(math.MinInt64); got != 0 {
		t.Errorf("clampTime(MinInt64) = %d", got)
	}
}
