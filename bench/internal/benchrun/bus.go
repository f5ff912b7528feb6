package benchrun

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BuildNATSServer builds the nats-server of go.mod into dir: the version
// the embedded default runs (as test/e2e/e2eutil does).
func BuildNATSServer(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "nats-server")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build nats-server: %v: %s", err, out)
	}
	return bin, nil
}

// NATSCluster is a three-node JetStream cluster on loopback.
type NATSCluster struct {
	Nodes []*Proc
	URLs  []string
}

// URL is every node's client URL, comma-separated (what --nats-url takes).
func (c *NATSCluster) URL() string { return strings.Join(c.URLs, ",") }

// Stop ends every node by its pid.
func (c *NATSCluster) Stop() {
	for _, n := range c.Nodes {
		n.Stop()
	}
}

// StartNATSCluster starts three nats-server nodes clustered on loopback
// with their stores under dir and the given max_payload (e.g. "8MB"), and
// waits until JetStream answers through every node.
func StartNATSCluster(ctx context.Context, bin, dir, maxPayload string) (*NATSCluster, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addrs, err := FreeAddrs(9) // client, route, monitor for each node
	if err != nil {
		return nil, err
	}
	var routes []string
	for i := range 3 {
		routes = append(routes, "nats-route://"+addrs[3*i+1])
	}
	c := &NATSCluster{}
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		conf := filepath.Join(dir, name+".conf")
		text := fmt.Sprintf(`server_name: %s
listen: %s
http: %s
max_payload: %s
jetstream { store_dir: %q, max_file_store: 20GB, max_memory_store: 256MB }
cluster { name: bench, listen: %s, routes: [%s] }
`, name, addrs[3*i], addrs[3*i+2], maxPayload, filepath.Join(dir, name), addrs[3*i+1], strings.Join(routes, ", "))
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			c.Stop()
			return nil, err
		}
		p, err := Start(bin, filepath.Join(dir, name+".log"), "-c", conf)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, p)
		c.URLs = append(c.URLs, "nats://"+addrs[3*i])
	}
	for i, u := range c.URLs {
		err := Poll(ctx, time.Minute, func() bool {
			nc, err := nats.Connect(u, nats.Timeout(2*time.Second))
			if err != nil {
				return false
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return false
			}
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err = js.AccountInfo(actx)
			return err == nil
		})
		if err != nil {
			c.Stop()
			return nil, fmt.Errorf("nats node n%d not ready: %w\n%s", i+1, err, c.Nodes[i].Output())
		}
	}
	return c, nil
}

// VictoriaMetricsBinary is Debian's single-node VictoriaMetrics.
const VictoriaMetricsBinary = "/usr/bin/victoria-metrics"

// StartVictoriaMetrics starts VictoriaMetrics on a free loopback port with
// its data in dir, as meshlens needs it (no latency offset, identical
// re-sent samples stored once), and returns it with its base URL.
func StartVictoriaMetrics(ctx context.Context, dir string) (*Proc, string, error) {
	addrs, err := FreeAddrs(1)
	if err != nil {
		return nil, "", err
	}
	p, err := Start(VictoriaMetricsBinary, filepath.Join(dir, "victoria-metrics.log"),
		"-storageDataPath", filepath.Join(dir, "vm"), "-httpListenAddr", addrs[0],
		"-retentionPeriod=100y", "-search.latencyOffset=0s", "-dedup.minScrapeInterval=1ms")
	if err != nil {
		return nil, "", err
	}
	base := "http://" + addrs[0]
	if err := Poll(ctx, time.Minute, func() bool {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}); err != nil {
		p.Stop()
		return nil, "", fmt.Errorf("victoria-metrics not ready: %w\n%s", err, p.Output())
	}
	return p, base, nil
}
