package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/api"
	"github.com/meshlens/meshlens/internal/wire"
)

// TestPairViewReportsTrimmedDetail: /api/v1/pairs, served by the server's
// pair source over a real aggregator, says beside the windows what the
// memory budget trimmed (pair_detail), and that a rollups-only server
// holds no pair windows at all.
func TestPairViewReportsTrimmedDetail(t *testing.T) {
	w := 10 * time.Second
	var hosts []string
	for i := 1; i <= 12; i++ {
		hosts = append(hosts, fmt.Sprintf("h%02d", i))
	}
	t0 := time.Now().Add(-10 * time.Minute).Truncate(w)
	feed := func(agg *aggregate.Aggregator) {
		for r := range 30 {
			start := t0.Add(time.Duration(r) * w)
			for i, src := range hosts {
				b := &wire.Batch{Agent: src, Epoch: 1, Seq: uint64(r*100 + i + 1)}
				for _, dst := range hosts {
					if dst != src {
						b.Results = append(b.Results, &wire.ProbeResult{Dst: dst, Protocol: wire.Protocol_PROTOCOL_TCP,
							Outcome: wire.Outcome_OUTCOME_OK, StartUnixNano: start.UnixNano(), RttNs: 100_000})
					}
				}
				if err := agg.Ingest(b, start.Add(w)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := agg.Advance(context.Background(), start.Add(w+2*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
	}
	get := func(t *testing.T, agg *aggregate.Aggregator, src, dst string) (windows []api.PairWindow, detail api.PairDetail) {
		t.Helper()
		a, err := api.New(api.Config{AllowAnonymous: api.RoleViewer}, api.Sources{Pairs: pairSource{&Server{aggs: []*aggregate.Aggregator{agg}}}})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/pairs?"+url.Values{"src": {src}, "dst": {dst}, "proto": {"tcp"}}.Encode(), nil))
		var body struct {
			Status     string           `json:"status"`
			Data       []api.PairWindow `json:"data"`
			PairDetail *api.PairDetail  `json:"pair_detail"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Status != "success" || body.PairDetail == nil {
			t.Fatalf("GET /api/v1/pairs: %d %s (%v)", rec.Code, rec.Body, err)
		}
		return body.Data, *body.PairDetail
	}

	// 132 pairs a window, about 10 KB in full: 120 KB hold twelve.
	budgeted, err := aggregate.New(aggregate.Config{Window: w, Lateness: time.Second, PairDetailMaxBytes: 120_000})
	if err != nil {
		t.Fatal(err)
	}
	feed(budgeted)
	// A pair outside the budget's 1-in-2 sample: its oldest windows go.
	var src, dst string
	for _, a := range hosts {
		for _, b := range hosts {
			if d := budgeted.PairDetail(a, b, wire.Protocol_PROTOCOL_TCP, t0, t0.Add(time.Hour)); a != b && src == "" && d.Mode == aggregate.DetailBudget {
				src, dst = a, b
			}
		}
	}
	if src == "" {
		t.Fatal("the budget trimmed no pair")
	}
	windows, detail := get(t, budgeted, src, dst)
	if detail.Mode != "budget" || detail.CompleteFrom == nil || detail.BudgetBytes != 120_000 || detail.SampleOneIn < 2 ||
		!strings.Contains(detail.Note, "trimmed by the memory budget") || !strings.Contains(detail.Note, detail.CompleteFrom.Format(time.RFC3339)) {
		t.Fatalf("pair_detail = %+v, want the budget's trim", detail)
	}
	if len(windows) == 0 || len(windows) >= 30 || !windows[0].Start.Equal(*detail.CompleteFrom) {
		t.Fatalf("%d windows from %v, pair_detail says complete from %v", len(windows), windows[0].Start, *detail.CompleteFrom)
	}

	only, err := aggregate.New(aggregate.Config{Window: w, Lateness: time.Second, RollupsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	feed(only)
	windows, detail = get(t, only, hosts[0], hosts[1])
	if len(windows) != 0 || detail.Mode != "off" || !strings.Contains(detail.Note, "--pair-detail=off") {
		t.Errorf("rollups-only: %d windows, pair_detail %+v", len(windows), detail)
	}
}

// TestRollupsOnlyNeedsEvidenceOff: rollups-only aggregation keeps no
// pairs, which evidence on demand plans from, so the server refuses the
// two together and says what to do.
func TestRollupsOnlyNeedsEvidenceOff(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:0", TopologyFile: "does-not-matter.yaml"}
	cfg.Aggregate.RollupsOnly = true
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "--pair-detail=off needs --evidence=off") {
		t.Errorf("New = %v, want the refusal", err)
	}
}

// TestDefaultPairDetailBudget: the default budget is a sixteenth of the
// memory, within its bounds; MemTotal is read in bytes.
func TestDefaultPairDetailBudget(t *testing.T) {
	f := filepath.Join(t.TempDir(), "meminfo")
	if err := os.WriteFile(f, []byte("MemFree:         1000 kB\nMemTotal:       24683744 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := memTotal(f); err != nil || n != 24683744<<10 {
		t.Errorf("memTotal = %d, %v; want %d", n, err, int64(24683744)<<10)
	}
	if got, mem := DefaultPairDetailMaxBytes(), memoryLimit(); got < minPairDetailBytes || got > maxPairDetailBytes ||
		(mem/16 >= minPairDetailBytes && mem/16 <= maxPairDetailBytes && got != mem/16) {
		t.Errorf("default budget %d with %d bytes of memory", got, mem)
	}
}
