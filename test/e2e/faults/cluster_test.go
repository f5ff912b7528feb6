package faults

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

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/testpki"
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
	monitor         string // the node's HTTP monitoring endpoint
	p               *e2eutil.Process
}

// clusterTLS is the nodes' certificate and the CA they verify clients by.
type clusterTLS struct{ cert, key, ca string }

// startCluster starts a three-node JetStream cluster on loopback named
// name. With tls nil clients speak plaintext (allowed on loopback), so
// that `meshlens sim live`, which speaks plain NATS, can feed it. It
// returns once JetStream answers through every node.
func startCluster(t *testing.T, dir, name string, tls *clusterTLS, clientOpts ...nats.Option) []*natsNode {
	t.Helper()
	bin := natsServerBinary(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var nodes []*natsNode
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
		n := &natsNode{name: fmt.Sprintf("n%d", i+1), url: fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i])}
		monitorPort := testkit.FixedPort(t)
		n.monitor = fmt.Sprintf("http://127.0.0.1:%d", monitorPort)
		n.conf = filepath.Join(dir, n.name+".conf")
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
max_payload: 2MB
jetstream { store_dir: %q, max_file_store: 1GB, max_memory_store: 64MB }
cluster { name: %s, listen: %s, routes: [%s] }
`, n.name, clientPorts[i], monitorPort, filepath.Join(dir, n.name), name, strings.TrimPrefix(routes[i], "nats-route://"), strings.Join(routes, ", "))
		if tls != nil {
			conf += fmt.Sprintf("tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }\n", tls.cert, tls.key, tls.ca)
		}
		if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		n.p = e2eutil.Start(t, "nats "+n.name, nil, bin, "-c", n.conf)
		nodes = append(nodes, n)
	}
	// Ready when JetStream answers through every node (meta leader elected).
	for _, n := range nodes {
		testkit.CheckFor(t, time.Minute, 250*time.Millisecond, func() error {
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
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range nodes {
				m, err := metaCluster(n)
				t.Logf("JetStream meta group as %s sees it: %+v (err %v)", n.name, m, err)
			}
		}
	})
	return nodes
}

// metaInfo is the part of a node's /jsz that says how its JetStream meta
// group stands.
type metaInfo struct {
	Leader   string `json:"leader"`
	Size     int    `json:"cluster_size"`
	Replicas []struct {
		Name    string `json:"name"`
		Current bool   `json:"current"`
		Offline bool   `json:"offline"`
	} `json:"replicas"`
}

func metaCluster(n *natsNode) (*metaInfo, error) {
	resp, err := http.Get(n.monitor + "/jsz")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var jsz struct {
		Meta *metaInfo `json:"meta_cluster"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
		return nil, fmt.Errorf("%s /jsz: %w", n.name, err)
	}
	if jsz.Meta == nil {
		return nil, fmt.Errorf("%s /jsz: no meta_cluster", n.name)
	}
	return jsz.Meta, nil
}

// waitMetaHealthy waits until the meta group's leader sees every other
// node as a current peer. A node killed while the group is still forming
// tests the cluster's bootstrap, which is not what the fault tests are
// about: with a full, current group the survivors elect a new leader.
func waitMetaHealthy(t *testing.T, nodes []*natsNode) {
	t.Helper()
	byName := map[string]*natsNode{}
	for _, n := range nodes {
		byName[n.name] = n
	}
	testkit.CheckFor(t, time.Minute, 250*time.Millisecond, func() error {
		m, err := metaCluster(nodes[0])
		if err != nil {
			return err
		}
		leader := byName[m.Leader]
		if leader == nil {
			return fmt.Errorf("meta leader %q is none of the nodes", m.Leader)
		}
		if m, err = metaCluster(leader); err != nil {
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

func clusterURLs(nodes []*natsNode) string {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url)
	}
	return strings.Join(urls, ",")
}

// TestNATSNodeKilled: the server and the agents run against an external
// three-node JetStream cluster with three replicas, over mTLS; SIGKILL of
// a node loses no result and counts none twice. Two victims: the node
// leading the results stream, and the node serving the ingester's consumer
// (in memory, one replica: it dies with its node, and the ingester must
// notice and re-create it elsewhere).
func TestNATSNodeKilled(t *testing.T) {
	t.Run("results stream leader", func(t *testing.T) {
		natsNodeKilled(t, "127.6.9.1", func(t *testing.T, st jetstream.Stream, info *jetstream.StreamInfo) string {
			return info.Cluster.Leader
		})
	})
	t.Run("ingest consumer's node", func(t *testing.T) {
		natsNodeKilled(t, "127.6.10.1", func(t *testing.T, st jetstream.Stream, _ *jetstream.StreamInfo) string {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var ingest []*jetstream.ConsumerInfo
			consumers := st.ListConsumers(ctx)
			for ci := range consumers.Info() {
				if ci.Config.FilterSubject == bus.PartitionSubjects(0) {
					ingest = append(ingest, ci)
				}
			}
			if err := consumers.Err(); err != nil {
				t.Fatal(err)
			}
			if len(ingest) != 1 || ingest[0].Cluster == nil {
				t.Fatalf("ingest consumers on the stream: %d, want one with cluster info", len(ingest))
			}
			return ingest[0].Cluster.Leader
		})
	})
}

// natsNodeKilled runs the fabric on a fresh cluster, kills the node victim
// names, and checks every result is counted exactly once.
func natsNodeKilled(t *testing.T, base string, victim func(*testing.T, jetstream.Stream, *jetstream.StreamInfo) string) {
	f := newFabric(t, base, 3)
	p := testpki.New(t, "meshlens test CA")
	nodeCert, nodeKey := p.Leaf(t, "nats-node")
	clientCert, clientKey := p.Leaf(t, "client")
	clientTLS, err := bus.ClientTLSConfig(bus.TLSFiles{CA: p.File, Cert: clientCert, Key: clientKey})
	if err != nil {
		t.Fatal(err)
	}
	f.natsOpts = []nats.Option{nats.Secure(clientTLS)}
	nodes := startCluster(t, filepath.Join(f.dir, "cluster"), "meshlens", &clusterTLS{nodeCert, nodeKey, p.File}, f.natsOpts...)
	f.natsURL = clusterURLs(nodes)
	tlsArgs := []string{"--nats-tls-ca", p.File, "--nats-tls-cert", clientCert, "--nats-tls-key", clientKey}
	f.serverArgs = append([]string{"--nats-url", f.natsURL, "--stream-replicas", "3"}, tlsArgs...)
	f.startServer()
	for _, h := range f.hosts {
		f.startAgent(h, tlsArgs...)
	}
	f.waitProbing(f.hosts...)
	waitMetaHealthy(t, nodes)

	nc, js := f.connect()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	st, err := js.Stream(ctx, bus.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil {
		t.Fatalf("results stream: %d replicas, cluster %+v", info.Config.Replicas, info.Cluster)
	}
	name := victim(t, st, info)
	nc.Close()
	var killed *natsNode
	var rest []*natsNode
	for _, n := range nodes {
		if n.name == name {
			killed = n
		} else {
			rest = append(rest, n)
		}
	}
	if killed == nil {
		t.Fatalf("victim %q is none of the nodes", name)
	}
	before := map[string]float64{}
	for _, h := range f.hosts {
		s, err := f.agentState(h)
		if err != nil {
			t.Fatal(err)
		}
		before[h] = s.published
	}
	killed.p.Kill()
	t.Logf("killed %s (results stream leader: %s)", killed.name, info.Cluster.Leader)
	// The test's own connections go to the survivors from now on.
	f.natsURL = clusterURLs(rest)

	// Agents keep publishing through the survivors.
	testkit.CheckFor(t, 2*time.Minute, 500*time.Millisecond, func() error {
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
	// How the ingester's consumer rode out the kill (the follower re-creates
	// it when it fails, skips or stalls).
	for _, reason := range []string{"error", "gap", "stalled"} {
		n, err := f.serverMetric("meshlens_ingest_consumer_restarts_total", `reason="`+reason+`"`)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("ingest consumer restarts, %s: %v", reason, n)
	}
}
