package faults

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/testpki"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

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
	nodes := e2eutil.StartNATSCluster(t, filepath.Join(f.dir, "cluster"), "meshlens", &e2eutil.ClusterTLS{Cert: nodeCert, Key: nodeKey, CA: p.File}, f.natsOpts...)
	f.natsURL = e2eutil.ClusterURLs(nodes)
	tlsArgs := []string{"--nats-tls-ca", p.File, "--nats-tls-cert", clientCert, "--nats-tls-key", clientKey}
	f.serverArgs = append([]string{"--nats-url", f.natsURL, "--stream-replicas", "3"}, tlsArgs...)
	f.startServer()
	for _, h := range f.hosts {
		f.startAgent(h, tlsArgs...)
	}
	f.waitProbing(f.hosts...)
	e2eutil.WaitMetaHealthy(t, nodes)

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
	var killed *e2eutil.NATSNode
	var rest []*e2eutil.NATSNode
	for _, n := range nodes {
		if n.Name == name {
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
	killed.P.Kill()
	t.Logf("killed %s (results stream leader: %s)", killed.Name, info.Cluster.Leader)
	// The test's own connections go to the survivors from now on.
	f.natsURL = e2eutil.ClusterURLs(rest)

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
