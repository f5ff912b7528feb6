package analyze

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/meshlens/meshlens/internal/localize"
)

// FuzzIngestPathData feeds arbitrary bytes to the core as a path report:
// it never panics, every report is either accepted or rejected under a
// known reason, the buffer stays bounded, and the real localizer copes
// with whatever was accepted.
func FuzzIngestPathData(f *testing.F) {
	f.Add(src, report(src, traced(win(0), path...)))
	f.Add(src, report(src, traced(win(0), "dc1-pod1-rack1-tor", "*", "dc1-spine2")))
	f.Add(src, report(src, traced(win(0), "127.9.0.2", "dc1-pod1-rack1-tor")))
	f.Add(src, report(src, traced(win(0), "dc1-pod1-rack1-tor", "dc1-pod1-leaf1", "dc1-pod1-rack1-tor")))
	f.Add("dc1-pod1-rack2-h01", report(src, traced(win(0), path...)))
	f.Add(src, []byte{0x0a, 0xff})
	x := testIndex(f)
	known := map[string]bool{}
	for _, r := range RejectReasons() {
		known[r] = true
	}
	f.Fuzz(func(t *testing.T, publisher string, data []byte) {
		a, err := New(x, Config{Window: width, MaxBufferedTraces: 64, Localizers: []string{localize.NameMeshlens, localize.NameVote}})
		if err != nil {
			t.Fatal(err)
		}
		err = a.IngestPathData(publisher, data, win(0))
		var rejected float64
		for r := range known {
			rejected += testutilValue(a, r)
		}
		accepted := counterValue(a.m.accepted)
		if accepted+rejected != 1 || (err == nil) != (accepted == 1) {
			t.Fatalf("accepted %v, rejected %v, err %v: want exactly one outcome", accepted, rejected, err)
		}
		if len(a.traces) > 64 {
			t.Fatalf("%d traces buffered over the bound", len(a.traces))
		}
		for i := range 2 {
			a.IngestWindow(0, half(i, 1))
			if _, err := a.Advance(win(i + 1)); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func testutilValue(a *Analyzer, reason string) float64 {
	return counterValue(a.m.rejected.WithLabelValues(reason))
}

func counterValue(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
