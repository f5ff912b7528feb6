package e2eutil

// A three-node NATS JetStream cluster on loopback, for the tests of an
// external bus (node failures, handovers, scale-out roles).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshlens/meshlens/internal/testkit"
)

var (
	natsServerOnce sync.Once
	natsServerBin  string
	natsServerErr  error
)

// natsServerBinary builds the nats-server of go.mod once: the same
// version the embedded default runs, as a separate process to SIGKILL.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	natsServerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meshlens-e2e-nats")
		if err != nil {
			natsServerErr = err
			return
		}
		natsServerBin = filepath.Join(dir, "nats-server")
		cmd := exec.Command("go", "build", "-o", natsServerBin, "github.com/nats-io/nats-server/v2")
		cmd.Dir = RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			natsServerErr = fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	})
	if natsServerErr != nil {
		t.Fatal(natsServerErr)
	}
	return natsServerBin
}

// NATSNode is one node of a three-node JetStream cluster on loopback.
type NATSNode struct {
	Name, Conf, URL string
	Monitor         string // the node's HTTP monitoring endpoint
	P               *Process
}

// ClusterTLS is the nodes' certificate and the CA they verify clients by.
type ClusterTLS struct{ Cert, Key, CA string }

// StartNATSCluster starts a three-node JetStream cluster on loopback named
// name. With tls nil clients speak plaintext (allowed on loopback), so
// that `meshlens sim live`, which speaks plain NATS, can feed it. It
// returns once JetStream answers through every node.
func StartNATSCluster(t *testing.T, dir, name string, tls *ClusterTLS, clientOpts ...nats.Option) []*NATSNode {
	t.Helper()
	bin := natsServerBinary(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var nodes []*NATSNode
	var routes []string
	// The nodes' routes name each other before any of them binds: ports
	// known in advance (see testkit.FixedPort), client and monitor ports
	// too, since nats-server does not announce what it bound.
	clientPorts := make([]int, 3)
	for i := range 3 {
		clientPorts[i] = testkit.FixedPort(t)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", testkit.FixedPort(t)))
	}
	for i := range 3 {
		n := &NATSNode{Name: fmt.Sprintf("n%d", i+1), URL: fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i])}
		monitorPort := testkit.FixedPort(t)
		n.Monitor = fmt.Sprintf("http://127.0.0.1:%d", monitorPort)
		n.Conf = filepath.Join(dir, n.Name+".conf")
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
max_payload: 2MB
jetstream { store_dir: %q, max_file_store: 1GB, max_memory_store: 64MB }
cluster { name: %s, listen: %s, routes: [%s] }
`, n.Name, clientPorts[i], monitorPort, filepath.Join(dir, n.Name), name, strings.TrimPrefix(routes[i], "nats-route://"), strings.Join(routes, ", "))
		if tls != nil {
			conf += fmt.Sprintf("tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }\n", tls.Cert, tls.Key, tls.CA)
		}
		if err := os.WriteFile(n.Conf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		n.P = Start(t, "nats "+n.Name, nil, bin, "-c", n.Conf)
		nodes = append(nodes, n)
	}
	// Ready when JetStream answers through every node (meta leader elected).
	for _, n := range nodes {
		testkit.CheckFor(t, time.Minute, 250*time.Millisecond, func() error {
			nc, err := nats.Connect(n.URL, append(clientOpts, nats.Timeout(2*time.Second))...)
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err = js.AccountInfo(ctx)
			return err
		})
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range nodes {
				m, err := MetaCluster(n)
				t.Logf("JetStream meta group as %s sees it: %+v (err %v)", n.Name, m, err)
			}
		}
	})
	return nodes
}

// MetaInfo is the part of a node's /jsz that says how its JetStream meta
// group stands.
type MetaInfo struct {
	Leader   string `json:"leader"`
	Size     int    `json:"cluster_size"`
	Replicas []struct {
		Name    string `json:"name"`
		Current bool   `json:"current"`
		Offline bool   `json:"offline"`
	} `json:"replicas"`
}

// MetaCluster is the node's view of the JetStream meta group.
func MetaCluster(n *NATSNode) (*MetaInfo, error) {
	resp, err := http.Get(n.Monitor + "/jsz")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var jsz struct {
		Meta *MetaInfo `json:"meta_cluster"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
		return nil, fmt.Errorf("%s /jsz: %w", n.Name, err)
	}
	if jsz.Meta == nil {
		return nil, fmt.Errorf("%s /jsz: no meta_cluster", n.Name)
	}
	return jsz.Meta, nil
}

// WaitMetaHealthy waits until the meta group's leader sees every other
// node as a current peer. A node killed while the group is still forming
// tests the cluster's bootstrap, which is not what the fault tests are
// about: with a full, current group the survivors elect a new leader.
func WaitMetaHealthy(t *testing.T, nodes []*NATSNode) {
	t.Helper()
	byName := map[string]*NATSNode{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	testkit.CheckFor(t, time.Minute, 250*time.Millisecond, func() error {
		m, err := MetaCluster(nodes[0])
		if err != nil {
			return err
		}
		leader := byName[m.Leader]
		if leader == nil {
			return fmt.Errorf("meta leader %q is none of the nodes", m.Leader)
		}
		if m, err = MetaCluster(leader); err != nil {
			return err
		}
		current := 0
		for _, r := range m.Replicas {
			if r.Current && !r.Offline {
				current++
			}
		}
		if m.Size != len(nodes) || current != len(nodes)-1 {
			return fmt.Errorf("meta group: leader %s, size %d, %d of %d followers current", m.Leader, m.Size, current, len(nodes)-1)
		}
		return nil
	})
}

// ClusterURLs is the nodes' client URLs, as --nats-url takes them.
func ClusterURLs(nodes []*NATSNode) string {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.URL)
	}
	return strings.Join(urls, ",")
}
