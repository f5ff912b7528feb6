package alert

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/slo"
)

// BenchmarkObserve: one lifecycle step with 500 firing conditions on
// distinct racks (500 incidents open).
func BenchmarkObserve(b *testing.B) {
	m, err := NewManager(Config{Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	conds := make([]Condition, 500)
	for i := range conds {
		rack := fmt.Sprintf("dc1-pod%d-rack%d", i/20+1, i%20+1)
		conds[i] = Condition{Labels: map[string]string{"alertname": "X", "slo": rack}, Scope: &slo.Scope{Rack: rack}, Annotations: map[string]string{"summary": "s"}}
	}
	at := t0
	for b.Loop() {
		at = at.Add(30 * time.Second)
		m.Observe(at, conds)
	}
}
