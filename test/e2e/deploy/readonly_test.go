package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// TestTopologyOnReadOnlyMount: the server as the Kubernetes manifests run
// it, its topology on a read-only mount (a ConfigMap): an admin PUT of the
// topology is refused with 409 and the file is left as it was. Needs root
// for the mount namespace.
func TestTopologyOnReadOnlyMount(t *testing.T) {
	e2eutil.Require(t, "unshare", "mount")
	if os.Geteuid() != 0 {
		t.Fatal("needs root: it mounts the topology read-only in a mount namespace")
	}
	bin := e2eutil.Binary(t)
	dir := t.TempDir()
	topoDir := filepath.Join(dir, "topology")
	if err := os.Mkdir(topoDir, 0o755); err != nil {
		t.Fatal(err)
	}
	topoFile := filepath.Join(topoDir, "topology.yaml")
	topo := e2eutil.Topology(t, topoFile, bin, "topo", "gen", "--pods", "1", "--racks-per-pod", "1", "--hosts-per-rack", "2")
	before, err := os.ReadFile(topoFile)
	if err != nil {
		t.Fatal(err)
	}
	const token = "admin-token-for-the-read-only-test"
	sum := sha256.Sum256([]byte(token))
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, fmt.Appendf(nil, "- {name: admin, role: admin, sha256: %s}\n", hex.EncodeToString(sum[:])), 0o600); err != nil {
		t.Fatal(err)
	}
	// The server in its own mount namespace where the topology's directory
	// is a read-only bind mount of itself.
	wrapper := filepath.Join(dir, "meshlens-ro")
	script := `#!/bin/sh
exec unshare -m --propagation private sh -c 'd=$0; b=$1; shift; mount --bind "$d" "$d" && mount -o remount,bind,ro "$d" && exec "$b" "$@"' ` +
		topoDir + ` ` + bin + ` "$@"
`
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	srv := e2eutil.StartServer(t, nil, wrapper, "--topology", topoFile, "--data-dir", filepath.Join(dir, "data"), "--tokens-file", tokens)
	if len(topo.Hosts) == 0 {
		t.Fatal("empty topology")
	}

	req, err := http.NewRequest(http.MethodPut, srv.HTTPURL+"/api/v1/config/topology", strings.NewReader(string(before)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), "read-only") {
		t.Errorf("PUT topology on a read-only mount: %s %s, want 409 saying the file is read-only", resp.Status, body)
	}
	after, err := os.ReadFile(topoFile)
	if err != nil || string(after) != string(before) {
		t.Errorf("the topology file changed: %v", err)
	}
	entries, _ := os.ReadDir(topoDir)
	if len(entries) != 1 {
		t.Errorf("the topology's directory holds %d entries, want the file alone", len(entries))
	}
}
