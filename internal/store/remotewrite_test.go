package store

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/testkit/tsdbtest"
)

// receiver is a remote-write endpoint that decodes what it gets, checks the
// protocol headers, and answers with scripted status codes.
type receiver struct {
	t        *testing.T
	mu       sync.Mutex
	statuses []int // answered in order; 204 once exhausted
	got      map[string][]prompb.Sample
	requests int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for h, want := range map[string]string{
		"Content-Encoding":                  "snappy",
		"Content-Type":                      "application/x-protobuf",
		"X-Prometheus-Remote-Write-Version": "0.1.0",
	} {
		if got := r.Header.Get(h); got != want {
			http.Error(w, fmt.Sprintf("header %s = %q, want %q", h, got, want), http.StatusBadRequest)
			return
		}
	}
	compressed, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	raw, err := snappy.Decode(nil, compressed)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	status := http.StatusNoContent
	if len(rc.statuses) > 0 {
		status, rc.statuses = rc.statuses[0], rc.statuses[1:]
	}
	if status/100 == 2 {
		for _, ts := range req.Timeseries {
			b := labels.NewScratchBuilder(len(ts.Labels))
			for _, l := range ts.Labels {
				b.Add(l.Name, l.Value)
			}
			key := b.Labels().String()
			rc.got[key] = append(rc.got[key], ts.Samples...)
		}
	}
	w.WriteHeader(status)
}

func (rc *receiver) samples() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := 0
	for _, s := range rc.got {
		n += len(s)
	}
	return n
}

func TestRemoteWrite(t *testing.T) {
	tests := []struct {
		name        string
		statuses    []int
		capacity    int
		samples     int
		wantSent    float64
		wantFailed  float64
		wantDropped float64
		wantRetried bool
	}{
		{name: "all acknowledged", samples: 25, wantSent: 25},
		{name: "5xx and 429 are retried", statuses: []int{503, 429, 500}, samples: 10, wantSent: 10, wantRetried: true},
		{name: "4xx is not retried", statuses: []int{400}, samples: 10, wantFailed: 7, wantSent: 3},
		{name: "full queue drops and counts", capacity: 4, samples: 10, wantSent: 4, wantDropped: 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := &receiver{t: t, statuses: tc.statuses, got: map[string][]prompb.Sample{}}
			srv := httptest.NewServer(rc)
			defer srv.Close()

			s := openStore(t, t.TempDir(), Options{
				Registerer: prometheus.NewRegistry(),
				RemoteWrite: RemoteWriteConfig{
					URL: srv.URL + "/api/v1/write", QueueCapacity: tc.capacity,
					MaxSamplesPerSend: 7, FlushInterval: 10 * time.Millisecond,
					MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
				},
			})
			defer s.Close()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()

			base := time.Now().Add(-time.Minute)
			var in []sample
			for i := range tc.samples {
				in = append(in, sample{labels.FromStrings("__name__", "meshlens_test", "i", fmt.Sprint(i%3)), base.Add(time.Duration(i) * time.Second), float64(i)})
			}
			appendAll(t, s, in)

			m := s.RemoteWriter().samples
			testkit.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
				handled := testutil.ToFloat64(m.WithLabelValues("sent")) + testutil.ToFloat64(m.WithLabelValues("failed")) + testutil.ToFloat64(m.WithLabelValues("dropped"))
				if handled < float64(tc.samples) {
					return fmt.Errorf("%v of %d samples handled", handled, tc.samples)
				}
				return nil
			})
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
			for result, want := range map[string]float64{"sent": tc.wantSent, "failed": tc.wantFailed, "dropped": tc.wantDropped} {
				if got := testutil.ToFloat64(m.WithLabelValues(result)); got != want {
					t.Errorf("samples_total{result=%q} = %v, want %v", result, got, want)
				}
			}
			if got := testutil.ToFloat64(m.WithLabelValues("retried")) > 0; got != tc.wantRetried {
				t.Errorf("retried = %v, want %v", got, tc.wantRetried)
			}
			if got := rc.samples(); float64(got) != tc.wantSent {
				t.Errorf("receiver got %d samples, want %v", got, tc.wantSent)
			}
			// Within a series, samples arrive time-ordered.
			for k, ss := range rc.got {
				for i := 1; i < len(ss); i++ {
					if ss[i].Timestamp < ss[i-1].Timestamp {
						t.Errorf("series %s: samples out of order at %d", k, i)
					}
				}
			}
		})
	}
}

func TestRemoteWriteRollbackNotForwarded(t *testing.T) {
	rc := &receiver{t: t, got: map[string][]prompb.Sample{}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s := openStore(t, t.TempDir(), Options{RemoteWrite: RemoteWriteConfig{URL: srv.URL, FlushInterval: 10 * time.Millisecond}})
	defer s.Close()
	a := s.Appender(context.Background())
	if _, err := a.Append(0, labels.FromStrings("__name__", "x"), time.Now().UnixMilli(), 1); err != nil {
		t.Fatal(err)
	}
	if err := a.Rollback(); err != nil {
		t.Fatal(err)
	}
	if n := s.RemoteWriter().QueueLen(); n != 0 {
		t.Fatalf("queue after rollback = %d, want 0", n)
	}
}

func TestNewRemoteWriterBadURL(t *testing.T) {
	for _, u := range []string{"ftp://x/y", "not a url at all", "http://", "://"} {
		if _, err := NewRemoteWriter(RemoteWriteConfig{URL: u}, nil, nil); err == nil {
			t.Errorf("NewRemoteWriter(%q): want error", u)
		}
	}
}

// TestRemoteWriteToPrometheus is the real proof: a real Prometheus (Debian's
// /usr/bin/prometheus, installed by CI) receives our remote writes and
// answers them through its own query API.
func TestRemoteWriteToPrometheus(t *testing.T) {
	promURL := tsdbtest.StartPrometheus(t)

	s := openStore(t, t.TempDir(), Options{
		Registerer:  prometheus.NewRegistry(),
		RemoteWrite: RemoteWriteConfig{URL: promURL + "/api/v1/write", FlushInterval: 20 * time.Millisecond},
	})
	defer s.Close()
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	defer func() {
		rcancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	now := time.Now()
	var in []sample
	for i := range 30 {
		in = append(in, sample{labels.FromStrings("__name__", "meshlens_dcpair_loss_ratio", "src_dc", "dc1", "dst_dc", fmt.Sprintf("dc%d", 2+i%3)), now.Add(time.Duration(i-30) * time.Second), float64(i)})
	}
	appendAll(t, s, in)

	// 10 samples per series were written; ask Prometheus to count them.
	testkit.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		q := url.Values{"query": {`count_over_time(meshlens_dcpair_loss_ratio[5m])`}, "time": {fmt.Sprint(now.Unix())}}
		resp, err := http.Get(promURL + "/api/v1/query?" + q.Encode())
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var body struct {
			Status string `json:"status"`
			Data   struct {
				Result []struct {
					Metric map[string]string `json:"metric"`
					Value  [2]any            `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return err
		}
		if len(body.Data.Result) != 3 {
			return fmt.Errorf("prometheus has %d series, want 3", len(body.Data.Result))
		}
		for _, r := range body.Data.Result {
			if r.Value[1] != "10" {
				return fmt.Errorf("series %v has %v samples, want 10", r.Metric, r.Value[1])
			}
		}
		return nil
	})
	// The writer counts a request as sent once it has read the response,
	// a moment after Prometheus stored its samples.
	testkit.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := testutil.ToFloat64(s.RemoteWriter().samples.WithLabelValues("sent")); got != 30 {
			return fmt.Errorf("sent = %v, want 30", got)
		}
		return nil
	})
}

func FuzzEncodeWriteRequest(f *testing.F) {
	f.Add("a", "b", int64(1), 1.5, int64(0))
	f.Add("", "", int64(-5), 0.0, int64(7))
	f.Fuzz(func(t *testing.T, name, value string, t1 int64, v float64, t2 int64) {
		lset := labels.FromStrings("__name__", "m", "l", name+value)
		batch := []pendingSample{{lset, t1, v}, {labels.FromStrings("__name__", "m"), t2, v}, {lset, t2, v}}
		body, err := encodeWriteRequest(batch)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			t.Fatal(err)
		}
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, ts := range req.Timeseries {
			n += len(ts.Samples)
			for i := 1; i < len(ts.Samples); i++ {
				if ts.Samples[i].Timestamp < ts.Samples[i-1].Timestamp {
					t.Fatalf("samples not time-ordered: %v", ts.Samples)
				}
			}
		}
		if n != len(batch) {
			t.Fatalf("decoded %d samples, want %d", n, len(batch))
		}
	})
}

func BenchmarkEncodeWriteRequest(b *testing.B) {
	batch := make([]pendingSample, 0, DefaultRemoteWriteMaxPerSend)
	for i := range DefaultRemoteWriteMaxPerSend {
		batch = append(batch, pendingSample{labels.FromStrings("__name__", "meshlens_rackpair_loss_ratio", "src", fmt.Sprintf("r%d", i%50), "dst", fmt.Sprintf("r%d", i/50)), int64(i), 0.01})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeWriteRequest(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(batch)), "samples/op")
}
