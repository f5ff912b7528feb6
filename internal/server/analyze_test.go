package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/wire"
)

// TestPathReportsReachTheAnalyzer: reports published on the bus reach
// stage 2 with their subject's agent as publisher; the good one is taken,
// a forged, a malformed and an off-fabric one are refused and counted, and
// /api/v1/suspects answers before any window was localized.
func TestPathReportsReachTheAnalyzer(t *testing.T) {
	r := startServer(t, "")
	nc, err := bus.Connect(r.s.NATSURL(), "test-agent")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const src, dst = "dc1-pod1-rack1-h01", "dc1-pod1-rack2-h01"
	report := func(hops ...string) []byte {
		data, err := (&wire.PathReport{Agent: src, Probes: []*wire.TracedProbe{{
			Dst: dst, Protocol: wire.Protocol_PROTOCOL_TCP, StartUnixNano: time.Now().UnixNano(), Lost: true, Hops: hops,
		}}}).MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	good := report("dc1-pod1-rack1-tor", "dc1-pod1-leaf1", "dc1-pod1-rack2-tor", dst)
	for _, m := range []struct {
		subject string
		data    []byte
	}{
		{bus.PathsSubject(src), good},
		{bus.PathsSubject("dc1-pod1-rack1-h02"), good},
		{bus.PathsSubject(src), []byte{0xff, 0x01}},
		{bus.PathsSubject(src), report("dc1-pod1-rack1-tor", "198.51.100.9")},
	} {
		if err := nc.Publish(m.subject, m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"meshlens_path_reports_accepted_total":                            1,
		`meshlens_path_reports_rejected_total{reason="subject_mismatch"}`: 1,
		`meshlens_path_reports_rejected_total{reason="malformed"}`:        1,
		`meshlens_path_reports_rejected_total{reason="unknown_hop"}`:      1,
		"meshlens_path_traces_buffered":                                   1,
		// The results stream's usage is read from JetStream.
		"meshlens_stream_info_up": 1,
	}
	testkit.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		mfs, err := r.s.Registry().Gather()
		if err != nil {
			return err
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				name := mf.GetName()
				for _, l := range m.GetLabel() {
					name += fmt.Sprintf(`{%s=%q}`, l.GetName(), l.GetValue())
				}
				got[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		for k, v := range want {
			if got[k] != v {
				return fmt.Errorf("%s = %v, want %v", k, got[k], v)
			}
		}
		return nil
	})
	code, body := r.do(t, "viewer", "GET", "/api/v1/suspects", "")
	if code != 200 || !strings.Contains(body, `"status":"success"`) || !strings.Contains(body, `"suspects":[]`) {
		t.Errorf("/api/v1/suspects: %d %s", code, body)
	}
	code, body = r.do(t, "viewer", "GET", "/api/v1/evidence", "")
	if code != 200 || !strings.Contains(body, `"requests":[]`) || !strings.Contains(body, `"agents":{}`) {
		t.Errorf("/api/v1/evidence: %d %s", code, body)
	}
}
