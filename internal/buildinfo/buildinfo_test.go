package buildinfo

import (
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector("agent", "v1.2.3"))
	want := `# HELP meshlens_build_info Always 1; the labels say which component and build exported it.
# TYPE meshlens_build_info gauge
meshlens_build_info{component="agent",goversion="` + runtime.Version() + `",version="v1.2.3"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "meshlens_build_info"); err != nil {
		t.Error(err)
	}
}
