package faults

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/testpki"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// TestSecuredFabric runs the whole data path with mTLS on the bus, TLS on
// the API and per-agent credentials: agents still deliver exactly once,
// and nobody without a certificate and credentials gets in.
func TestSecuredFabric(t *testing.T) {
	p := testpki.New(t, "meshlens test CA")
	srvCert, srvKey := p.Leaf(t, "server")
	f := newFabric(t, "127.6.6.1", 3)
	credsDir := filepath.Join(f.dir, "creds")
	f.serverArgs = []string{"--creds-dir", credsDir,
		"--nats-tls-cert", srvCert, "--nats-tls-key", srvKey, "--nats-tls-client-ca", p.File,
		"--tls-cert", srvCert, "--tls-key", srvKey}
	f.tls = true
	clientTLS, err := bus.ClientTLSConfig(bus.TLSFiles{CA: p.File})
	if err != nil {
		t.Fatal(err)
	}
	f.httpClient = tlsClient(t, clientTLS)

	issue := func(args ...string) string {
		t.Helper()
		out := filepath.Join(f.dir, args[len(args)-1]+".creds")
		res, err := e2eutil.Run(context.Background(), f.bin, append([]string{"creds", "issue", "--creds-dir", credsDir, "--out", out}, args...)...)
		if err != nil {
			t.Fatalf("creds issue %v: %v\n%s", args, err, res)
		}
		return out
	}
	testCert, testKey := p.Leaf(t, "test")
	testTLS, err := bus.ClientTLSConfig(bus.TLSFiles{CA: p.File, Cert: testCert, Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	f.natsOpts = []nats.Option{nats.Secure(testTLS), nats.UserCredentials(issue("--privileged", "fault-test"))}

	f.startServer()
	agentCreds := map[string]string{}
	agentTLS := map[string]nats.Option{}
	for _, h := range f.hosts {
		// Issued while the server runs: it needs no restart to accept them.
		cert, key := p.Leaf(t, h)
		agentCreds[h] = issue(h)
		c, err := bus.ClientTLSConfig(bus.TLSFiles{CA: p.File, Cert: cert, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		agentTLS[h] = nats.Secure(c)
		f.startAgent(h, "--creds", agentCreds[h], "--nats-tls-ca", p.File, "--nats-tls-cert", cert, "--nats-tls-key", key)
	}
	f.waitProbing(f.hosts...)

	for _, tc := range []struct {
		name string
		opts []nats.Option
	}{
		{"certificate without credentials", []nats.Option{nats.Secure(testTLS)}},
		{"credentials without certificate", []nats.Option{nats.Secure(clientTLS), nats.UserCredentials(issue(f.hosts[0]))}},
		{"plaintext", []nats.Option{nats.UserCredentials(issue(f.hosts[0]))}},
	} {
		nc, err := nats.Connect("nats://"+f.natsAddr, append(tc.opts, nats.Timeout(5*time.Second))...)
		if err == nil {
			nc.Close()
			t.Errorf("%s: connected to the bus", tc.name)
		}
	}
	if resp, err := http.Get("http://" + f.httpAddr + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("the API answers plaintext HTTP")
		}
	}

	final := f.stopProbing(f.hosts...)
	f.requireExactlyOnce(countedBy(final))

	// A compromised host's credentials are revoked on the running server.
	gone := f.hosts[0]
	if out, err := e2eutil.Run(context.Background(), f.bin, "creds", "revoke", gone, "--creds-dir", credsDir); err != nil {
		t.Fatalf("creds revoke: %v\n%s", err, out)
	}
	testkit.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		nc, err := nats.Connect("nats://"+f.natsAddr, agentTLS[gone], nats.UserCredentials(agentCreds[gone]), nats.Timeout(5*time.Second))
		if err == nil {
			nc.Close()
			return fmt.Errorf("revoked credentials of %s still connect", gone)
		}
		return nil
	})
	nc, err := nats.Connect("nats://"+f.natsAddr, agentTLS[f.hosts[1]], nats.UserCredentials(agentCreds[f.hosts[1]]), nats.Timeout(5*time.Second))
	if err != nil {
		t.Errorf("%s's credentials after %s was revoked: %v", f.hosts[1], gone, err)
	} else {
		nc.Close()
	}
}

// TestPlaintextRefusedOffLoopback: a server listening on every interface
// and an agent dialing a remote bus without TLS refuse to start, with an
// error that says how to fix it.
func TestPlaintextRefusedOffLoopback(t *testing.T) {
	bin := e2eutil.Binary(t)
	dir := t.TempDir()
	topo := filepath.Join(dir, "fabric.yaml")
	out, err := e2eutil.Run(context.Background(), bin, "topo", "gen", "--dcs", "1", "--pods", "1", "--racks-per-pod", "1",
		"--hosts-per-rack", "1", "--leaves-per-pod", "1", "--spines", "1", "--base-addr", "127.6.7.1")
	if err != nil {
		t.Fatalf("topo gen: %v\n%s", err, out)
	}
	if err := os.WriteFile(topo, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"server API on every interface", []string{"server", "--topology", topo, "--data-dir", filepath.Join(dir, "d1"),
			"--http-addr", "0.0.0.0:0", "--nats-addr", "127.0.0.1:-1"}},
		{"server bus on every interface", []string{"server", "--topology", topo, "--data-dir", filepath.Join(dir, "d2"),
			"--http-addr", "127.0.0.1:0", "--nats-addr", ":-1"}},
		{"agent to a remote bus", []string{"agent", "--host", "dc1-pod1-rack1-h01", "--nats-url", "nats://192.0.2.1:4222",
			"--spool-dir", filepath.Join(dir, "spool")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := e2eutil.Run(context.Background(), bin, tc.args...)
			if err == nil {
				t.Fatalf("started: %s", out)
			}
			if !strings.Contains(out, "--insecure-plaintext") {
				t.Errorf("error does not say how to proceed: %s", out)
			}
		})
	}
}
