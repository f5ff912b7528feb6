package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/pinglist"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakePinglists map[string]*pinglist.Pinglist

func (f fakePinglists) Pinglist(host string) (*pinglist.Pinglist, bool) {
	p, ok := f[host]
	return p, ok
}

type fakeAgents []AgentStatus

func (f fakeAgents) Agents() []AgentStatus { return f }

type fakePairs struct {
	mu   sync.Mutex
	last PairQuery
}

func (f *fakePairs) PairWindows(_ context.Context, q PairQuery) ([]PairWindow, error) {
	f.mu.Lock()
	f.last = q
	f.mu.Unlock()
	if q.Src == "dc1-pod1-rack1-h99" {
		return nil, errors.New("aggregator is restarting")
	}
	return []PairWindow{{Start: q.Since, End: q.Since.Add(10 * time.Second), Proto: "tcp", Sent: 100, Lost: 1, LossRatio: 0.01, P50: new(40e-6)}}, nil
}

// fakeSuspects answers with the time it was asked about.
type fakeSuspects struct{}

func (fakeSuspects) SuspectsAt(at time.Time) any {
	return map[string]any{"at": at, "suspects": []string{}}
}

func TestJSONAPI(t *testing.T) {
	pairs := &fakePairs{}
	ready := errors.New("replaying the results stream")
	var readyMu sync.Mutex
	src := Sources{
		Topology:  func() any { return map[string]any{"dcs": []string{"dc1"}} },
		Pinglists: fakePinglists{"dc1-pod1-rack1-h01": {Host: "dc1-pod1-rack1-h01", Version: 7, Peers: []pinglist.Peer{{Host: "dc1-pod1-rack1-h02", Addr: "127.0.0.2", Level: 1}}}},
		Agents:    fakeAgents{{Host: "dc1-pod1-rack1-h01", State: "up", LastSeen: base}},
		Pairs:     pairs,
		Suspects:  fakeSuspects{},
		Ready: func() error {
			readyMu.Lock()
			defer readyMu.Unlock()
			return ready
		},
	}
	s := newTestServer(t, Config{AllowAnonymous: RoleViewer}, src)
	tests := []struct {
		name     string
		call     call
		wantCode int
		contains string
	}{
		{"topology", call{path: "/api/v1/topology"}, 200, `{"status":"success","data":{"dcs":["dc1"]}}`},
		{"pinglist", call{path: "/api/v1/pinglists/dc1-pod1-rack1-h01"}, 200, `"version":7`},
		{"pinglist of an unknown host", call{path: "/api/v1/pinglists/dc9-pod1-rack1-h01"}, 404, `"errorType":"not_found"`},
		{"pinglist of a bad host name", call{path: "/api/v1/pinglists/" + url.PathEscape("a b")}, 400, `invalid host name`},
		{"agents", call{path: "/api/v1/agents"}, 200, `"state":"up"`},
		{"pairs", call{path: "/api/v1/pairs", form: url.Values{"src": {"dc1-pod1-rack1-h01"}, "dst": {"dc1-pod1-rack2-h01"}, "proto": {"tcp"}}}, 200, `"loss_ratio":0.01`},
		{"pairs of an unknown protocol", call{path: "/api/v1/pairs", form: url.Values{"src": {"a"}, "dst": {"b"}, "proto": {"sctp"}}}, 400, `unknown protocol \"sctp\"`},
		{"protocols", call{path: "/api/v1/protocols"}, 200, `{"status":"success","data":[{"name":"tcp","peer":true,"target":false,"responder":true},{"name":"udp",`},
		{"pairs without dst", call{path: "/api/v1/pairs", form: url.Values{"src": {"dc1-pod1-rack1-h01"}}}, 400, `invalid parameter \"dst\"`},
		{"pairs with a bad since", call{path: "/api/v1/pairs", form: url.Values{"src": {"a"}, "dst": {"b"}, "since": {"soon"}}}, 400, `cannot parse \"soon\"`},
		{"pairs over a huge range", call{path: "/api/v1/pairs", form: url.Values{"src": {"a"}, "dst": {"b"}, "since": {"0"}}}, 400, `exceeds the limit`},
		{"pairs source failing", call{path: "/api/v1/pairs", form: url.Values{"src": {"dc1-pod1-rack1-h99"}, "dst": {"b"}}}, 422, `aggregator is restarting`},
		{"latest suspects", call{path: "/api/v1/suspects"}, 200, `{"status":"success","data":{"at":"0001-01-01T00:00:00Z","suspects":[]}}`},
		{"suspects at a time", call{path: "/api/v1/suspects", form: url.Values{"at": {"2026-01-01T00:00:10Z"}}}, 200, `"at":"2026-01-01T00:00:10Z"`},
		{"suspects at a bad time", call{path: "/api/v1/suspects", form: url.Values{"at": {"10s"}}}, 400, `want an RFC3339 time`},
		{"not ready", call{path: "/readyz"}, 503, "replaying the results stream"},
		{"healthy", call{path: "/healthz"}, 200, "ok"},
		{"no UI configured", call{path: "/index.html"}, 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := tc.call.do(t, s.url)
			if code != tc.wantCode || !strings.Contains(body, tc.contains) {
				t.Fatalf("got %d %s\nwant %d containing %s", code, body, tc.wantCode, tc.contains)
			}
		})
	}
	// The default window of /api/v1/pairs is the hour before now.
	call{path: "/api/v1/pairs", form: url.Values{"src": {"a"}, "dst": {"b"}}}.do(t, s.url)
	pairs.mu.Lock()
	if q := pairs.last; !q.Until.Equal(base) || !q.Since.Equal(base.Add(-time.Hour)) || q.Proto != "" {
		t.Errorf("pair query %+v, want the hour before %s", q, base)
	}
	pairs.mu.Unlock()

	readyMu.Lock()
	ready = nil
	readyMu.Unlock()
	if code, _, _ := (call{path: "/readyz"}).do(t, s.url); code != 200 {
		t.Errorf("readyz after ready: %d", code)
	}
}

func TestUnavailableSources(t *testing.T) {
	s := newTestServer(t, Config{AllowAnonymous: RoleViewer}, Sources{})
	for _, path := range []string{"/api/v1/topology", "/api/v1/agents", "/api/v1/pinglists/h1", "/api/v1/pairs?src=a&dst=b", "/api/v1/suspects", "/api/v1/query?query=1", "/api/v1/labels"} {
		code, body, _ := call{path: path}.do(t, s.url)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, `"errorType":"unavailable"`) {
			t.Errorf("%s: %d %s, want 503 unavailable", path, code, body)
		}
	}
}

func TestHardening(t *testing.T) {
	ui := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>meshlens</html>")) })
	s := newTestServer(t, Config{UI: ui}, Sources{})
	s.Handle("GET /api/v1/boom", RoleNone, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	s.Handle("POST /api/v1/boom", RoleNone, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	code, body, hdr := call{path: "/"}.do(t, s.url)
	if code != 200 || body != "<html>meshlens</html>" {
		t.Fatalf("UI: %d %s", code, body)
	}
	for h, want := range map[string]string{
		"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
	} {
		if got := hdr.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	// A panicking handler gives a 500, is counted, and the server goes on.
	for range 2 {
		code, body, _ := call{path: "/api/v1/boom"}.do(t, s.url)
		if code != 500 || !strings.Contains(body, `"errorType":"internal"`) {
			t.Fatalf("panic: %d %s", code, body)
		}
	}
	if got := testutil.ToFloat64(s.metrics.panics.WithLabelValues("GET /api/v1/boom")); got != 2 {
		t.Errorf("panics = %v, want 2", got)
	}
	if got := testutil.ToFloat64(s.metrics.requests.WithLabelValues("GET /api/v1/boom", "500")); got != 2 {
		t.Errorf("requests{code=500} = %v, want 2", got)
	}
	if code, _, _ := (call{path: "/healthz"}).do(t, s.url); code != 200 {
		t.Fatalf("after panics: %d", code)
	}
	// A mutating call that panics is audited with the status it got.
	if code, _, _ := (call{method: "POST", path: "/api/v1/boom"}).do(t, s.url); code != 500 {
		t.Fatalf("POST panic: %d", code)
	}
	if e := s.audit.entries(0); len(e) != 1 || e[0].Status != 500 || e[0].Principal != "anonymous" {
		t.Fatalf("audit after a panicking POST: %+v", e)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{AllowAnonymous: Role(9)},
		{Tokens: []Token{{Name: "x", Role: RoleNone}}},
	} {
		if _, err := New(cfg, Sources{}); err == nil {
			t.Errorf("New(%+v): want error", cfg)
		}
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	s, err := New(Config{AllowAnonymous: RoleViewer, Addr: "127.0.0.1:0"}, Sources{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := listenLoopback()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	u := "http://" + ln.Addr().String()
	if code, _, _ := (call{path: "/healthz"}).do(t, u); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()

	// Run reports a listen error instead of hanging.
	s2, _ := New(Config{Addr: "256.0.0.1:1"}, Sources{})
	if err := s2.Run(context.Background()); err == nil {
		t.Fatal("Run on a bad address: want error")
	}
}

func TestRoleText(t *testing.T) {
	for _, r := range []Role{RoleNone, RoleViewer, RoleOperator, RoleAdmin} {
		b, _ := r.MarshalText()
		var back Role
		if err := back.UnmarshalText(b); err != nil || back != r {
			t.Errorf("%v round trip: %v %v", r, back, err)
		}
		j, _ := json.Marshal(Principal{Name: "x", Role: r})
		if !strings.Contains(string(j), `"role":"`+r.String()+`"`) {
			t.Errorf("principal JSON %s", j)
		}
	}
	if _, err := ParseRole("root"); err == nil {
		t.Error("ParseRole(root): want error")
	}
}
