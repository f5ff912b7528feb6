package diagnose

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshlens/meshlens/internal/alert"
	"github.com/meshlens/meshlens/internal/slo"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// incidentFixture runs a real alert.Manager through a fault so that the
// incident has every part: culprit, SLO burn, mitigation, resolution.
func incidentFixture(t *testing.T) *alert.Manager {
	t.Helper()
	board := alert.NewBoard(0.5, 10*time.Minute)
	m, err := alert.NewManager(alert.Config{Blamer: board})
	if err != nil {
		t.Fatal(err)
	}
	rack := &slo.Scope{Rack: "dc1-pod1-rack3"}
	f := func(v float64) *float64 { return &v }
	status := func(firing bool, budget float64) []slo.Status {
		return []slo.Status{{Name: "rack3-availability", Scope: rack, BudgetRemaining: f(budget),
			Tiers: []slo.TierStatus{{Name: "page-1h", Severity: "page", Factor: 14.4, Long: "1h", Short: "5m", Firing: firing, LongBurn: f(31.5)}}}}
	}
	m.ObserveSLOs(t0, status(true, 0.92))
	board.Update([]alert.Culprit{{Element: "dc1-pod1-rack3-tor--dc1-pod1-leaf2", Kind: "link", Symptom: "loss", Estimate: 0.02, Confidence: 0.96,
		Evidence: "412 of 20,480 probes through it lost, from 37 pairs", Pairs: []string{"dc1-pod1-rack3-h01 -> dc1-pod1-rack1-h02", "dc1-pod1-rack3-h04 -> dc1-pod2-rack1-h01"}, At: t0.Add(30 * time.Second)}})
	m.ObserveSLOs(t0.Add(time.Minute), status(true, 0.85))
	if err := m.Mitigate(m.Incidents()[0].ID, t0.Add(3*time.Minute), "drained dc1-pod1-rack3-tor--dc1-pod1-leaf2 (dry-run)"); err != nil {
		t.Fatal(err)
	}
	m.ObserveSLOs(t0.Add(7*time.Minute), status(false, 0.83))
	return m
}

// apiServer serves the incidents as the meshlens API does.
func apiServer(t *testing.T, m *alert.Manager, token string) *httptest.Server {
	t.Helper()
	write := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/incidents", func(w http.ResponseWriter, _ *http.Request) {
		write(w, 200, map[string]any{"status": "success", "data": m.Incidents()})
	})
	mux.HandleFunc("GET /api/v1/incidents/{id}", func(w http.ResponseWriter, r *http.Request) {
		inc, ok := m.Incident(r.PathValue("id"))
		if !ok {
			write(w, 404, map[string]any{"status": "error", "errorType": "not_found", "error": "no incident " + r.PathValue("id")})
			return
		}
		write(w, 200, map[string]any{"status": "success", "data": inc})
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			write(w, 401, map[string]any{"status": "error", "errorType": "unauthorized", "error": "missing or bad token"})
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestIncidentsThroughAPI(t *testing.T) {
	m := incidentFixture(t)
	srv := apiServer(t, m, "tok")
	c, err := NewClient(srv.URL, "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	incs, err := c.Incidents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(incs) != 1 {
		t.Fatalf("%d incidents", len(incs))
	}
	var list bytes.Buffer
	if err := WriteIncidentList(&list, incs, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	golden(t, "incidents-list.txt", list.Bytes())
	inc, err := c.Incident(ctx, incs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	var show bytes.Buffer
	if err := WriteIncident(&show, inc); err != nil {
		t.Fatal(err)
	}
	golden(t, "incident-show.txt", show.Bytes())
}

func TestClientErrors(t *testing.T) {
	m := incidentFixture(t)
	srv := apiServer(t, m, "tok")
	ctx := context.Background()
	tests := []struct {
		name, server, token, id string
		unreachable             bool
		want                    string
	}{
		{"no token", srv.URL, "", "x", false, "401 unauthorized"},
		{"unknown incident", srv.URL, "tok", "nope", false, "404 not_found: no incident nope"},
		{"unreachable", "http://127.0.0.1:1", "tok", "x", true, "meshlens server unreachable at http://127.0.0.1:1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClient(tc.server, tc.token, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Incident(ctx, tc.id)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if errors.Is(err, ErrUnreachable) != tc.unreachable {
				t.Errorf("unreachable = %v", errors.Is(err, ErrUnreachable))
			}
		})
	}
	if _, err := NewClient("localhost:9780", "", nil); err == nil {
		t.Error("a server without scheme should be refused")
	}
}
