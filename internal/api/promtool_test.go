package api

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func listenLoopback() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// TestPromtool runs the real promtool (Debian's prometheus package, which
// CI installs) against the API: if promtool can query it, so can Grafana's
// Prometheus data source, which speaks the same API.
func TestPromtool(t *testing.T) {
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (CI installs the Debian prometheus package): %v", err)
	}
	s := newTestServer(t, Config{AllowAnonymous: RoleViewer}, Sources{Store: newTestStore(t)})
	T := base.Unix()
	tests := []struct {
		name string
		args []string
		want []string // lines or fragments of promtool's output
	}{
		{"instant", []string{"query", "instant", "--time", fmt.Sprint(T), s.url, `meshlens_rackpair_loss_ratio{dst="dc1-pod1-rack2-tor"}`},
			[]string{`meshlens_rackpair_loss_ratio{dst="dc1-pod1-rack2-tor", src="dc1-pod1-rack1-tor"} => 0.01 @[` + fmt.Sprint(T) + `]`}},
		{"instant json", []string{"query", "instant", "-o", "json", "--time", fmt.Sprint(T), s.url, `sum(meshlens_rackpair_loss_ratio)`},
			[]string{`"value":[` + fmt.Sprint(T) + `,"0.51"]`}},
		{"range", []string{"query", "range", "--start", base.Add(-2 * time.Minute).Format(time.RFC3339), "--end", base.Format(time.RFC3339), "--step", "1m", s.url, `meshlens_rackpair_loss_ratio{dst="dc1-pod1-rack2-tor"}`},
			[]string{"0.008 @[" + fmt.Sprint(T-120) + "]", "0.009 @[" + fmt.Sprint(T-60) + "]", "0.01 @[" + fmt.Sprint(T) + "]"}},
		{"series", []string{"query", "series", "--match", "meshlens_odd", s.url},
			[]string{`{__name__="meshlens_odd", kind="nan"}`}},
		{"labels", []string{"query", "labels", s.url, "dst"},
			[]string{"dc1-pod1-rack2-tor", "dc1-pod2-rack1-tor"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(bin, tc.args...).CombinedOutput()
			if err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(tc.args, " "), err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("promtool %s output lacks %q:\n%s", strings.Join(tc.args, " "), w, out)
				}
			}
		})
	}
	// A bad expression makes promtool fail with the server's message.
	out, err := exec.Command(bin, "query", "instant", s.url, "sum(").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bad_data") {
		t.Errorf("promtool with bad PromQL: err %v, output %s", err, out)
	}
}
