package server

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A topology file re-linked to /dev/zero or to a FIFO is refused on
// reload, counted, and the topology in force stays: the server neither
// reads forever nor blocks its reload loop. GET of the file refuses it
// too.
func TestTopologyReloadRefusesUnboundedFiles(t *testing.T) {
	r := startServer(t, "")
	before := r.s.Topology()
	fifo := filepath.Join(r.dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, target := range []string{"/dev/zero", fifo} {
		if err := os.Remove(r.s.cfg.TopologyFile); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, r.s.cfg.TopologyFile); err != nil {
			t.Fatal(err)
		}
		r.s.reloadTopologyIfChanged(context.Background())
		if got := testutil.ToFloat64(r.s.topoReloadErrors); got != float64(i+1) {
			t.Errorf("%s: reload errors = %v, want %d", target, got, i+1)
		}
		if r.s.Topology() != before {
			t.Errorf("%s: the topology in force changed", target)
		}
		if code, body := r.do(t, "viewer", http.MethodGet, "/api/v1/config/topology", ""); code != http.StatusInternalServerError {
			t.Errorf("%s: GET topology = %d %s", target, code, body)
		}
	}
}
