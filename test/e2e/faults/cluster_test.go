package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
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
		cmd.Dir = e2eutil.RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			natsServerErr = fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	})
	if natsServerErr != nil {
		t.Fatal(natsServerErr)
	}
	return natsServerBin
}

// natsNode is one node of a three-node JetStream cluster on loopback.
type natsNode struct {
	name, conf, url string
	p               *e2eutil.Process
}

// clusterTLS is the nodes' certificate and the CA they verify clients by.
type clusterTLS struct{ cert, key, ca string }

func startCluster(t *testing.T, dir string, tls clusterTLS, clientOpts ...nats.Option) []*natsNode {
	t.Helper()
	bin := natsServerBinary(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var nodes []*natsNode
	var routes []string
	clientPorts := make([]int, 3)
	for i := range 3 {
		clientPorts[i] = e2eutil.FreePort(t)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", e2eutil.FreePort(t)))
	}
	for i := range 3 {
		n := &natsNode{name: fmt.Sprintf("n%d", i+1), url: fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i])}
		n.conf = filepath.Join(dir, n.name+".conf")
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
max_payload: 2MB
jetstream { store_dir: %q, max_file_store: 1GB, max_memory_store: 64MB }
cluster { name: meshlens, listen: %s, routes: [%s] }
tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }
`, n.name, clientPorts[i], filepath.Join(dir, n.name), strings.TrimPrefix(routes[i], "nats-route://"), strings.Join(routes, ", "),
			tls.cert, tls.key, tls.ca)
		if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		n.p = e2eutil.Start(t, "nats "+n.name, nil, bin, "-c", n.conf)
		nodes = append(nodes, n)
	}
	// Ready when JetStream answers through every node (meta leader elected).
	for _, n := range nodes {
		e2eutil.Eventually(t, time.Minute, 250*time.Millisecond, func() error {
			nc, err := nats.Connect(n.url, append(clientOpts, nats.Timeout(2*time.Second))...)
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
	return nodes
}

func clusterURLs(nodes []*natsNode) string {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url)
	}
	return strings.Join(urls, ",")
}

// TestNATSNodeKilled: the server and the agents run against an external
// three-node JetStream cluster with three replicas, over mTLS; SIGKILL of
// the node leading the results stream loses no result and counts none
// twice.
func TestNATSNodeKilled(t *testing.T) {
	f := newFabric(t, "127.6.9.1", 3)
	p := newPKI(t)
	nodeCert, nodeKey := p.leaf(t, "nats-node")
	clientCert, clientKey := p.leaf(t, "client")
	clientTLS, err := bus.ClientTLSConfig(bus.TLSFiles{CA: p.caFile, Cert: clientCert, Key: clientKey})
	if err != nil {
		t.Fatal(err)
	}
	f.natsOpts = []nats.Option{nats.Secure(clientTLS)}
	nodes := startCluster(t, filepath.Join(f.dir, "cluster"), clusterTLS{nodeCert, nodeKey, p.caFile}, f.natsOpts...)
	f.natsURL = clusterURLs(nodes)
	tlsArgs := []string{"--nats-tls-ca", p.caFile, "--nats-tls-cert", clientCert, "--nats-tls-key", clientKey}
	f.serverArgs = append([]string{"--nats-url", f.natsURL, "--stream-replicas", "3"}, tlsArgs...)
	f.startServer()
	for _, h := range f.hosts {
		f.startAgent(h, tlsArgs...)
	}
	f.waitProbing(f.hosts...)

	// Find and kill the results stream's leader.
	nc, js := f.connect()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	st, err := js.Stream(ctx, bus.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	cancel()
	nc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil {
		t.Fatalf("results stream: %d replicas, cluster %+v", info.Config.Replicas, info.Cluster)
	}
	var leader *natsNode
	var rest []*natsNode
	for _, n := range nodes {
		if n.name == info.Cluster.Leader {
			leader = n
		} else {
			rest = append(rest, n)
		}
	}
	if leader == nil {
		t.Fatalf("stream leader %q is none of the nodes", info.Cluster.Leader)
	}
	before := map[string]float64{}
	for _, h := range f.hosts {
		s, err := f.agentState(h)
		if err != nil {
			t.Fatal(err)
		}
		before[h] = s.published
	}
	leader.p.Kill()
	t.Logf("killed %s, the results stream leader", leader.name)
	// The test's own connections go to the survivors from now on.
	f.natsURL = clusterURLs(rest)

	// Agents keep publishing through the survivors.
	e2eutil.Eventually(t, 2*time.Minute, 500*time.Millisecond, func() error {
		for _, h := range f.hosts {
			s, err := f.agentState(h)
			if err != nil {
				return err
			}
			if s.published < before[h]+5 {
				return fmt.Errorf("agent %s published %v batches since the kill", h, s.published-before[h])
			}
		}
		return nil
	})
	f.waitDrained(f.hosts...)
	final := f.stopProbing(f.hosts...)
	f.requireExactlyOnce(countedBy(final))
}
