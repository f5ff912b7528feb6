package server

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/slo"
)

// TestWarnRetention: an SLO whose window is longer than the embedded
// TSDB's retention is named in a warning at start; one that fits is not.
func TestWarnRetention(t *testing.T) {
	slos, err := slo.Parse(slo.File{Name: "slos.yaml", Data: []byte(`
slos:
  - name: month
    target: 99.9%
    window: 30d
    sli: {probe_availability: {rack: dc1-pod1-rack1}}
  - name: week
    target: 99.9%
    window: 7d
    sli: {probe_availability: {rack: dc1-pod1-rack1}}
`)})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	warnRetention(slog.New(slog.NewTextHandler(&buf, nil)), slos, 15*24*time.Hour)
	out := buf.String()
	if !strings.Contains(out, "slo=month") || strings.Contains(out, "slo=week") || strings.Count(out, "\n") != 1 {
		t.Errorf("warnings:\n%s\nwant one, for month", out)
	}
}
