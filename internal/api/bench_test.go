package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/store"
	"github.com/prometheus/prometheus/model/labels"
)

// benchServer serves a store of 1,024 rack-pair series with an hour of
// samples at 10s: the size of a 32-rack pod's rack-pair rollups.
func benchServer(b *testing.B) *Server {
	b.Helper()
	st, err := store.Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	app := st.Appender(context.Background())
	for i := range 360 {
		ts := base.Add(time.Duration(i-359) * 10 * time.Second).UnixMilli()
		for src := range 32 {
			for dst := range 32 {
				l := labels.FromStrings("__name__", "meshlens_rackpair_loss_ratio", "src", fmt.Sprintf("dc1-pod1-rack%d-tor", src+1), "dst", fmt.Sprintf("dc1-pod1-rack%d-tor", dst+1))
				if _, err := app.Append(0, l, ts, float64(i%7)/1000); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	if err := app.Commit(); err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{AllowAnonymous: RoleViewer}, Sources{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func benchRequest(b *testing.B, s *Server, path string, q url.Values) {
	b.Helper()
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path+"?"+q.Encode(), nil))
		if rec.Code != 200 {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		b.SetBytes(int64(rec.Body.Len()))
	}
}

func BenchmarkInstantQuery(b *testing.B) {
	s := benchServer(b)
	benchRequest(b, s, "/api/v1/query", url.Values{"query": {`meshlens_rackpair_loss_ratio`}, "time": {fmt.Sprint(base.Unix())}})
}

func BenchmarkRangeQuery(b *testing.B) {
	s := benchServer(b)
	benchRequest(b, s, "/api/v1/query_range", url.Values{
		"query": {`max by (src) (meshlens_rackpair_loss_ratio)`},
		"start": {fmt.Sprint(base.Add(-time.Hour).Unix())}, "end": {fmt.Sprint(base.Unix())}, "step": {"10s"},
	})
}

func BenchmarkSeries(b *testing.B) {
	s := benchServer(b)
	benchRequest(b, s, "/api/v1/series", url.Values{"match[]": {`meshlens_rackpair_loss_ratio{src="dc1-pod1-rack1-tor"}`}})
}
