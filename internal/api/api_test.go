package api

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
	)
}

// base is the fixed "now" of the tests: queries without ?time evaluate here.
var base = time.Date(2026, 11, 24, 4, 0, 0, 0, time.UTC)

func newTestStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{OutOfOrderWindow: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	// Two rack-pair loss series, one sample a minute over the 10 minutes
	// before base, and one series with a special value.
	app := st.Appender(context.Background())
	for i := range 11 {
		ts := base.Add(time.Duration(i-10) * time.Minute).UnixMilli()
		for _, s := range []struct {
			l labels.Labels
			v float64
		}{
			{labels.FromStrings("__name__", "meshlens_rackpair_loss_ratio", "src", "dc1-pod1-rack1-tor", "dst", "dc1-pod1-rack2-tor"), float64(i) / 1000},
			{labels.FromStrings("__name__", "meshlens_rackpair_loss_ratio", "src", "dc1-pod1-rack1-tor", "dst", "dc1-pod2-rack1-tor"), 0.5},
			{labels.FromStrings("__name__", "meshlens_odd", "kind", "nan"), nan()},
		} {
			if _, err := app.Append(0, s.l, ts, s.v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	return st
}

func nan() float64 { var z float64; return z / z }

// srv is a test API server on 127.0.0.1.
type srv struct {
	*Server
	url string
	reg *prometheus.Registry
}

func newTestServer(t *testing.T, cfg Config, src Sources) *srv {
	t.Helper()
	if cfg.Clock == nil {
		cfg.Clock = clock.NewVirtual(base)
	}
	reg := prometheus.NewRegistry()
	if src.Registry == nil {
		src.Registry = reg
	}
	s, err := New(cfg, src)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return &srv{Server: s, url: hs.URL, reg: reg}
}

type call struct {
	method string
	path   string
	form   url.Values // query string for GET, form body for POST
	token  string
}

func (c call) do(t *testing.T, baseURL string) (int, string, http.Header) {
	t.Helper()
	method := c.method
	if method == "" {
		method = http.MethodGet
	}
	u := baseURL + c.path
	var body io.Reader
	if method == http.MethodGet && c.form != nil {
		u += "?" + c.form.Encode()
	} else if c.form != nil {
		body = strings.NewReader(c.form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func TestPrometheusAPI(t *testing.T) {
	st := newTestStore(t)
	s := newTestServer(t, Config{AllowAnonymous: RoleViewer}, Sources{Store: st})
	T := base.Unix()
	at := func(d time.Duration) string { return fmt.Sprint(base.Add(d).Unix()) }
	ok := func(data string) string { return `{"status":"success","data":` + data + `}` }
	tests := []struct {
		name     string
		call     call
		wantCode int
		want     string // exact body
	}{
		{"instant vector", call{path: "/api/v1/query", form: url.Values{"query": {`meshlens_rackpair_loss_ratio{dst="dc1-pod1-rack2-tor"}`}}}, 200,
			ok(fmt.Sprintf(`{"resultType":"vector","result":[{"metric":{"__name__":"meshlens_rackpair_loss_ratio","dst":"dc1-pod1-rack2-tor","src":"dc1-pod1-rack1-tor"},"value":[%d,"0.01"]}]}`, T))},
		{"instant vector by POST form, RFC3339 time", call{method: "POST", path: "/api/v1/query", form: url.Values{"query": {`max(meshlens_rackpair_loss_ratio)`}, "time": {base.Add(-time.Minute).Format(time.RFC3339)}}}, 200,
			ok(fmt.Sprintf(`{"resultType":"vector","result":[{"metric":{},"value":[%d,"0.5"]}]}`, T-60))},
		{"fractional time keeps milliseconds", call{path: "/api/v1/query", form: url.Values{"query": {`1+1`}, "time": {fmt.Sprintf("%d.25", T)}}}, 200,
			ok(fmt.Sprintf(`{"resultType":"scalar","result":[%d.250,"2"]}`, T))},
		{"string", call{path: "/api/v1/query", form: url.Values{"query": {`"hello"`}}}, 200,
			ok(fmt.Sprintf(`{"resultType":"string","result":[%d,"hello"]}`, T))},
		{"NaN value", call{path: "/api/v1/query", form: url.Values{"query": {`meshlens_odd`}}}, 200,
			ok(fmt.Sprintf(`{"resultType":"vector","result":[{"metric":{"__name__":"meshlens_odd","kind":"nan"},"value":[%d,"NaN"]}]}`, T))},
		{"small and infinite values", call{path: "/api/v1/query", form: url.Values{"query": {`vector(1e-7) or label_replace(vector(1/0), "x", "y", "", "")`}}}, 200,
			ok(fmt.Sprintf(`{"resultType":"vector","result":[{"metric":{},"value":[%d,"1e-07"]},{"metric":{"x":"y"},"value":[%d,"+Inf"]}]}`, T, T))},
		{"empty vector", call{path: "/api/v1/query", form: url.Values{"query": {`nothing_here`}}}, 200,
			ok(`{"resultType":"vector","result":[]}`)},
		{"limit truncates with a warning", call{path: "/api/v1/query", form: url.Values{"query": {`meshlens_rackpair_loss_ratio`}, "limit": {"1"}}}, 200,
			`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"meshlens_rackpair_loss_ratio","dst":"dc1-pod1-rack2-tor","src":"dc1-pod1-rack1-tor"},"value":[` + fmt.Sprint(T) + `,"0.01"]}]},"warnings":["results truncated due to limit"]}`},
		{"range matrix", call{path: "/api/v1/query_range", form: url.Values{"query": {`meshlens_rackpair_loss_ratio{dst="dc1-pod1-rack2-tor"}`}, "start": {at(-2 * time.Minute)}, "end": {at(0)}, "step": {"1m"}}}, 200,
			ok(fmt.Sprintf(`{"resultType":"matrix","result":[{"metric":{"__name__":"meshlens_rackpair_loss_ratio","dst":"dc1-pod1-rack2-tor","src":"dc1-pod1-rack1-tor"},"values":[[%d,"0.008"],[%d,"0.009"],[%d,"0.01"]]}]}`, T-120, T-60, T))},
		{"range with float step by POST", call{method: "POST", path: "/api/v1/query_range", form: url.Values{"query": {`sum(meshlens_rackpair_loss_ratio)`}, "start": {at(-time.Minute)}, "end": {at(0)}, "step": {"60"}}}, 200,
			ok(fmt.Sprintf(`{"resultType":"matrix","result":[{"metric":{},"values":[[%d,"0.509"],[%d,"0.51"]]}]}`, T-60, T))},
		{"lookback_delta shortens the lookback", call{path: "/api/v1/query", form: url.Values{"query": {`count(meshlens_rackpair_loss_ratio)`}, "time": {at(2 * time.Minute)}, "lookback_delta": {"1m"}}}, 200,
			ok(`{"resultType":"vector","result":[]}`)},
		{"default lookback", call{path: "/api/v1/query", form: url.Values{"query": {`count(meshlens_rackpair_loss_ratio)`}, "time": {at(2 * time.Minute)}}}, 200,
			ok(fmt.Sprintf(`{"resultType":"vector","result":[{"metric":{},"value":[%d,"2"]}]}`, T+120))},
		{"bad lookback_delta", call{path: "/api/v1/query", form: url.Values{"query": {`1`}, "lookback_delta": {"-1m"}}}, 400, ""},
		{"labels", call{path: "/api/v1/labels"}, 200, ok(`["__name__","dst","kind","src"]`)},
		{"labels with match", call{path: "/api/v1/labels", form: url.Values{"match[]": {`meshlens_odd`}}}, 200, ok(`["__name__","kind"]`)},
		{"label values", call{path: "/api/v1/label/__name__/values"}, 200, ok(`["meshlens_odd","meshlens_rackpair_loss_ratio"]`)},
		{"label values with limit", call{path: "/api/v1/label/dst/values", form: url.Values{"limit": {"1"}}}, 200,
			`{"status":"success","data":["dc1-pod1-rack2-tor"],"warnings":["results truncated due to limit"]}`},
		{"label values of an unknown label", call{path: "/api/v1/label/nope/values"}, 200, ok(`[]`)},
		{"series", call{path: "/api/v1/series", form: url.Values{"match[]": {`meshlens_rackpair_loss_ratio`, `{kind="nan"}`}, "start": {at(-time.Hour)}, "end": {at(0)}}}, 200,
			ok(`[{"__name__":"meshlens_odd","kind":"nan"},{"__name__":"meshlens_rackpair_loss_ratio","dst":"dc1-pod1-rack2-tor","src":"dc1-pod1-rack1-tor"},{"__name__":"meshlens_rackpair_loss_ratio","dst":"dc1-pod2-rack1-tor","src":"dc1-pod1-rack1-tor"}]`)},
		{"series outside the time range", call{path: "/api/v1/series", form: url.Values{"match[]": {`meshlens_odd`}, "start": {at(time.Hour)}, "end": {at(2 * time.Hour)}}}, 200, ok(`[]`)},
		{"metadata of series nothing describes", call{path: "/api/v1/metadata"}, 200,
			ok(`{"meshlens_odd":[{"type":"unknown","help":"","unit":""}],"meshlens_rackpair_loss_ratio":[{"type":"unknown","help":"","unit":""}]}`)},
		{"exemplars", call{path: "/api/v1/query_exemplars", form: url.Values{"query": {`up`}}}, 200, ok(`[]`)},
		{"flags", call{path: "/api/v1/status/flags"}, 200, ok(`{}`)},

		// Bad input: a 4xx with Prometheus's envelope and a message that says what is wrong.
		{"invalid promql", call{path: "/api/v1/query", form: url.Values{"query": {`sum(`}}}, 400, ""},
		{"empty query", call{path: "/api/v1/query"}, 400, ""},
		{"bad time", call{path: "/api/v1/query", form: url.Values{"query": {`1`}, "time": {"yesterday"}}}, 400,
			`{"status":"error","errorType":"bad_data","error":"invalid parameter \"time\": cannot parse \"yesterday\" to a valid timestamp"}`},
		{"bad timeout", call{path: "/api/v1/query", form: url.Values{"query": {`1`}, "timeout": {"-5s"}}}, 400, ""},
		{"bad limit", call{path: "/api/v1/query", form: url.Values{"query": {`1`}, "limit": {"-1"}}}, 400, ""},
		{"range without step", call{path: "/api/v1/query_range", form: url.Values{"query": {`1`}, "start": {at(-time.Hour)}, "end": {at(0)}}}, 400, ""},
		{"range zero step", call{path: "/api/v1/query_range", form: url.Values{"query": {`1`}, "start": {at(-time.Hour)}, "end": {at(0)}, "step": {"0"}}}, 400,
			`{"status":"error","errorType":"bad_data","error":"invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"}`},
		{"range end before start", call{path: "/api/v1/query_range", form: url.Values{"query": {`1`}, "start": {at(0)}, "end": {at(-time.Hour)}, "step": {"1m"}}}, 400, ""},
		{"range too many points", call{path: "/api/v1/query_range", form: url.Values{"query": {`1`}, "start": {at(-24 * time.Hour)}, "end": {at(0)}, "step": {"1s"}}}, 400,
			`{"status":"error","errorType":"bad_data","error":"exceeded maximum resolution of 11000 points per timeseries. Try decreasing the query resolution (?step=XX)"}`},
		{"range too long", call{path: "/api/v1/query_range", form: url.Values{"query": {`1`}, "start": {"0"}, "end": {at(0)}, "step": {"1w"}}}, 400, ""},
		{"range absurd bounds", call{path: "/api/v1/query_range", form: url.Values{"query": {`1`}, "start": {"-9e18"}, "end": {"9e18"}, "step": {"1e15"}}}, 400, ""},
		{"NaN time", call{path: "/api/v1/query", form: url.Values{"query": {`1`}, "time": {"NaN"}}}, 400, ""},
		// A subquery's steps are bounded before the engine evaluates them:
		// this one is 315 M steps from a 40-byte query.
		{"subquery too fine", call{path: "/api/v1/query", form: url.Values{"query": {`count_over_time(vector(1)[10y:1s])`}}}, 400,
			`{"status":"error","errorType":"bad_data","error":"subquery vector(1)[10y:1s]: 315360000 steps, at most 11000: use a coarser step ([range:step])"}`},
		{"subquery without a step", call{path: "/api/v1/query", form: url.Values{"query": {`max_over_time(vector(1)[1y:])`}}}, 400, ""},
		{"nested subqueries", call{path: "/api/v1/query", form: url.Values{"query": {`max_over_time(max_over_time(vector(1)[10d:1m])[10d:1m])`}}}, 400, ""},
		{"subquery over a long range query", call{path: "/api/v1/query_range", form: url.Values{"query": {`max_over_time(vector(1)[1h:1s])`}, "start": {at(-30 * 24 * time.Hour)}, "end": {at(0)}, "step": {"1h"}}}, 400, ""},
		{"subquery within bounds", call{path: "/api/v1/query", form: url.Values{"query": {`count_over_time(vector(1)[1d:1m])`}, "time": {at(0)}}}, 200,
			`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[` + fmt.Sprint(base.Unix()) + `,"1440"]}]}}`},
		{"series without match", call{path: "/api/v1/series"}, 400,
			`{"status":"error","errorType":"bad_data","error":"no match[] parameter provided"}`},
		{"series with a bad selector", call{path: "/api/v1/series", form: url.Values{"match[]": {`{}`}}}, 400, ""},
		{"labels with end before start", call{path: "/api/v1/labels", form: url.Values{"start": {at(0)}, "end": {at(-time.Hour)}}}, 400, ""},
		{"execution error", call{path: "/api/v1/query", form: url.Values{"query": {`label_replace(meshlens_rackpair_loss_ratio, "dst", "x", "", "")`}}}, 422, ""},
		{"unknown API path", call{path: "/api/v1/nope"}, 404,
			`{"status":"error","errorType":"not_found","error":"no API endpoint GET /api/v1/nope"}`},
		{"wrong method", call{method: "DELETE", path: "/api/v1/query"}, 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, hdr := tc.call.do(t, s.url)
			if code != tc.wantCode {
				t.Fatalf("status %d, want %d; body %s", code, tc.wantCode, body)
			}
			if tc.want != "" && body != tc.want {
				t.Fatalf("body\n got %s\nwant %s", body, tc.want)
			}
			if code == 405 {
				return
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var env struct {
				Status    string `json:"status"`
				ErrorType string `json:"errorType"`
				Error     string `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &env); err != nil {
				t.Fatalf("body is not JSON: %v: %s", err, body)
			}
			if code >= 400 && (env.Status != "error" || env.ErrorType == "" || env.Error == "") {
				t.Errorf("error envelope incomplete: %s", body)
			}
		})
	}
	// Abuse did not hurt: the server still answers, and bad input was counted.
	if code, _, _ := (call{path: "/api/v1/query", form: url.Values{"query": {`1`}}}).do(t, s.url); code != 200 {
		t.Fatalf("after bad input: status %d", code)
	}
	if got := testutil.ToFloat64(s.metrics.bad.WithLabelValues("GET /api/v1/query")); got < 5 {
		t.Errorf("bad requests counted for GET /api/v1/query = %v, want >= 5", got)
	}
}

func TestBodyLimit(t *testing.T) {
	s := newTestServer(t, Config{AllowAnonymous: RoleViewer, MaxBodyBytes: 1024}, Sources{Store: newTestStore(t)})
	code, body, _ := call{method: "POST", path: "/api/v1/query", form: url.Values{"query": {strings.Repeat("x", 4096)}}}.do(t, s.url)
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413: %s", code, body)
	}
}

func TestQueryTimeout(t *testing.T) {
	s := newTestServer(t, Config{AllowAnonymous: RoleViewer}, Sources{Store: newTestStore(t)})
	// A 1ns deadline has always passed when evaluation starts: 503 timeout.
	code, body, _ := call{path: "/api/v1/query_range", form: url.Values{
		"query": {`count_over_time(meshlens_rackpair_loss_ratio[1h])`}, "start": {fmt.Sprint(base.Add(-10 * time.Hour).Unix())}, "end": {fmt.Sprint(base.Unix())}, "step": {"1h"}, "timeout": {"1e-9"},
	}}.do(t, s.url)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"errorType":"timeout"`) {
		t.Fatalf("status %d body %s, want 503 timeout", code, body)
	}
}

func TestGzipAndFormatQuery(t *testing.T) {
	s := newTestServer(t, Config{AllowAnonymous: RoleViewer}, Sources{Store: newTestStore(t)})
	req, _ := http.NewRequest(http.MethodGet, s.url+"/api/v1/format_query?query="+url.QueryEscape(`sum by(dst)(rate(x[5m]))`), nil)
	req.Header.Set("Accept-Encoding", "gzip") // set by hand: the transport then leaves the body compressed
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q, want gzip", resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"status":"success","data":"sum by (dst) (rate(x[5m]))"}`; string(body) != want {
		t.Fatalf("body %s, want %s", body, want)
	}
}

func TestQuerySlots(t *testing.T) {
	s := newTestServer(t, Config{AllowAnonymous: RoleViewer, MaxConcurrentQueries: 1}, Sources{Store: newTestStore(t)})
	q := call{path: "/api/v1/query", form: url.Values{"query": {`1`}, "timeout": {"0.05"}}}
	s.querySlots <- struct{}{} // a long query holds the only slot
	code, body, _ := q.do(t, s.url)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "query slots") {
		t.Fatalf("with no free slot: %d %s, want 503 waiting for a slot", code, body)
	}
	<-s.querySlots
	if code, body, _ := q.do(t, s.url); code != 200 {
		t.Fatalf("with a free slot: %d %s", code, body)
	}
}
