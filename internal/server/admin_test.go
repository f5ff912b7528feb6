package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/api"
	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/diagnose"
	"github.com/meshlens/meshlens/internal/slo"
	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/internal/testpki"
	"github.com/meshlens/meshlens/internal/topology"
)

// running is a whole server in the test process, on loopback.
type running struct {
	s      *Server
	url    string
	dir    string
	tokens map[string]string // role → secret
	stop   func()            // stops it (also done at the test's end)
	client *http.Client
}

const testSLOs = `slos:
  - name: fabric-availability
    target: 99.9%
    window: 7d
    sli:
      probe_availability: {dc: dc1}
`

// startServer starts a server in dir (a new one when ""); a server
// restarted in the same dir keeps its data and its tokens.
func startServer(t *testing.T, dir string, opts ...func(*Config, *running)) *running {
	t.Helper()
	fresh := dir == ""
	if fresh {
		dir = t.TempDir()
	}
	topo, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 1, RacksPerPod: 2, HostsPerRack: 2, LeavesPerPod: 1, Spines: 1})
	if err != nil {
		t.Fatal(err)
	}
	data, err := topo.MarshalYAML()
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if !fresh {
			return p // as the first server left it
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	r := &running{dir: dir, tokens: map[string]string{}, client: http.DefaultClient}
	var tokens strings.Builder
	for _, role := range []string{"viewer", "operator", "admin"} {
		// Deterministic secrets, so that a restarted server takes them.
		secret := fmt.Sprintf("%s-%064d", role, 7)
		r.tokens[role] = secret
		fmt.Fprintf(&tokens, "- {name: %s-user, role: %s, sha256: %s}\n", role, role, api.HashToken(secret))
	}
	httpAddr := testkit.LoopbackAddr(t)
	cfg := Config{
		TopologyFile: write("topology.yaml", string(data)), DataDir: filepath.Join(dir, "data"),
		HTTPAddr: httpAddr, NATSAddr: "127.0.0.1:-1",
		HTTP:     HTTPConfig{TokensFile: write("tokens.yaml", tokens.String()), AuditLogFile: filepath.Join(dir, "audit.jsonl")},
		Alerting: AlertingConfig{SLOFiles: []string{write("slos.yaml", testSLOs)}, EvaluateEvery: time.Hour},
	}
	r.url = "http://" + httpAddr
	for _, o := range opts {
		o(&cfg, r)
	}
	r.s, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.s.Run(ctx) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server: %v", err)
			}
		})
	}
	t.Cleanup(r.stop)
	testkit.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		resp, err := r.client.Get(r.url + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	})
	return r
}

// do sends a request as role ("" for none) and returns status and body.
func (r *running) do(t *testing.T, role, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, r.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+r.tokens[role])
	}
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestChangesNeedTheirRole: viewers read and change nothing; operators
// acknowledge incidents; admins replace the topology and the SLOs, which
// are validated first (a bad body changes nothing) and in force once
// answered. Every change, allowed or refused, is in the audit log.
func TestChangesNeedTheirRole(t *testing.T) {
	r := startServer(t, "")

	// An incident to acknowledge: the SLO's fast tier fires.
	burn := 20.0
	r.s.alerting.mgr.ObserveSLOs(time.Now(), []slo.Status{{Name: "fabric-availability", Scope: &slo.Scope{DC: "dc1"},
		Tiers: []slo.TierStatus{{Name: "fast", Severity: "page", Factor: 14.4, Long: "1h", Short: "5m", Firing: true, LongBurn: &burn, ShortBurn: &burn}}}})
	incs := r.s.alerting.mgr.Incidents()
	if len(incs) != 1 {
		t.Fatalf("%d incidents", len(incs))
	}
	ack := "/api/v1/incidents/" + incs[0].ID + "/ack"

	bigger, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 1, RacksPerPod: 3, HostsPerRack: 2, LeavesPerPod: 1, Spines: 1})
	if err != nil {
		t.Fatal(err)
	}
	biggerYAML, err := bigger.MarshalYAML()
	if err != nil {
		t.Fatal(err)
	}
	const drainRule = "execute: true\nmax_layer_share: 50%\nrules:\n  - {name: drain-links, kinds: [link], min_confidence: 0.9, hold_down: 5m, webhook: {url: 'http://127.0.0.1:9/drain'}}\n"
	twoSLOs := testSLOs + `  - name: rack1-availability
    target: 99%
    window: 28d
    sli:
      probe_availability: {rack: dc1-pod1-rack1}
`
	steps := []struct {
		name         string
		role         string
		method, path string
		body         string
		status       int
		inBody       string
	}{
		{"anonymous cannot read", "", "GET", "/api/v1/topology", "", 401, ""},
		{"viewer reads", "viewer", "GET", "/api/v1/config/topology", "", 200, "dc1-pod1-rack2-h02"},
		{"viewer cannot acknowledge", "viewer", "POST", ack, "", 403, "needs role operator"},
		{"viewer cannot replace the topology", "viewer", "PUT", "/api/v1/config/topology", string(biggerYAML), 403, `PUT /api/v1/config/topology needs role admin; \"viewer-user\" has viewer`},
		{"operator cannot replace the SLOs", "operator", "PUT", "/api/v1/config/slos", twoSLOs, 403, "needs role admin"},
		{"malformed JSON", "operator", "POST", ack, `{"comment": `, 400, "request body"},
		{"unknown field", "operator", "POST", ack, `{"coment": "typo"}`, 400, "unknown field"},
		{"unknown incident", "operator", "POST", "/api/v1/incidents/nope/ack", "", 404, "no such incident"},
		{"operator acknowledges", "operator", "POST", ack, `{"comment": "on it"}`, 200, `"by":"operator-user"`},
		{"only once", "admin", "POST", ack, "", 409, "already acknowledged by operator-user"},
		{"invalid topology", "admin", "PUT", "/api/v1/config/topology", "hosts:\n  - {name: h1, addr: 127.0.0.1, rack: nowhere}\n", 400, "request body:2"},
		{"unknown key", "admin", "PUT", "/api/v1/config/topology", "colour: blue\n", 400, "request body:1"},
		{"admin replaces the topology", "admin", "PUT", "/api/v1/config/topology", string(biggerYAML), 200, `"hosts":6`},
		{"in force", "viewer", "GET", "/api/v1/pinglists/dc1-pod1-rack3-h01", "", 200, "dc1-pod1-rack3-h02"},
		{"invalid SLOs", "admin", "PUT", "/api/v1/config/slos", "slos:\n  - name: x\n    target: 120%\n", 400, "request body:"},
		{"admin replaces the SLOs", "admin", "PUT", "/api/v1/config/slos", twoSLOs, 200, "rack1-availability"},
		{"saved", "viewer", "GET", "/api/v1/config/slos", "", 200, "rack1-availability"},
		{"no remediation yet", "viewer", "GET", "/api/v1/config/remediation", "", 200, `"source":"none"`},
		{"operator cannot set remediation", "operator", "PUT", "/api/v1/config/remediation", drainRule, 403, "needs role admin"},
		{"no commands through the API", "admin", "PUT", "/api/v1/config/remediation",
			"rules:\n  - {name: x, kinds: [host], min_confidence: 0.9, command: [/usr/bin/true]}\n", 400, "request body:2: rules[0].command"},
		{"no secret files through the API", "admin", "PUT", "/api/v1/config/remediation",
			"rules:\n  - {name: x, kinds: [link], min_confidence: 0.9, webhook: {url: 'http://127.0.0.1:9/d', secret_file: /etc/shadow}}\n", 400, "secret_file"},
		{"admin sets remediation", "admin", "PUT", "/api/v1/config/remediation", drainRule, 200, `"action":"webhook http://127.0.0.1:9/drain"`},
		{"in force", "viewer", "GET", "/api/v1/config/remediation", "", 200, `"max_evidence_age":"20s"`},
	}
	for _, st := range steps {
		code, body := r.do(t, st.role, st.method, st.path, st.body)
		if code != st.status || !strings.Contains(body, st.inBody) {
			t.Errorf("%s: %s %s as %q = %d %s, want %d containing %q", st.name, st.method, st.path, st.role, code, body, st.status, st.inBody)
		}
	}

	if got := r.s.Topology(); len(got.Hosts) != 6 {
		t.Errorf("topology in force has %d hosts, want 6", len(got.Hosts))
	}
	onDisk, err := topology.Load(r.s.cfg.TopologyFile)
	if err != nil || len(onDisk.Hosts) != 6 {
		t.Errorf("topology file: %v hosts, err %v", len(onDisk.Hosts), err)
	}
	var names []string
	for _, o := range r.s.alerting.engine.SLOs() {
		names = append(names, o.Name)
	}
	if strings.Join(names, ",") != "fabric-availability,rack1-availability" {
		t.Errorf("SLOs in force: %v", names)
	}
	if inc, _ := r.s.alerting.mgr.Incident(incs[0].ID); inc.Acknowledged == nil || inc.Acknowledged.Comment != "on it" {
		t.Errorf("incident acknowledgement: %+v", inc.Acknowledged)
	}

	// The audit log has every attempted change, with who and the outcome
	// (the API writes an entry as its handler returns, which may be just
	// after the client has read the answer).
	type entry struct {
		Principal, Method, Path string
		Status                  int
	}
	var changes int
	for _, st := range steps {
		if st.method != "GET" {
			changes++
		}
	}
	var got []entry
	testkit.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got = readAudit[entry](t, filepath.Join(r.dir, "audit.jsonl")); len(got) != changes {
			return fmt.Errorf("audit log has %d entries, want %d: %+v", len(got), changes, got)
		}
		return nil
	})
	want := entry{"admin-user", "PUT", "/api/v1/config/remediation", 200}
	if got[len(got)-1] != want {
		t.Errorf("last audit entry %+v, want %+v", got[len(got)-1], want)
	}
	if e := got[0]; e.Principal != "viewer-user" || e.Status != 403 {
		t.Errorf("first audit entry %+v, want the viewer's refused acknowledgement", e)
	}

	// `meshlens incidents ack` speaks the same API: its client reads the
	// server's refusal, and names the role a token lacks.
	for _, tc := range []struct{ role, id, want string }{
		{"operator", incs[0].ID, "409 conflict: alert: acknowledge " + incs[0].ID + ": incident already acknowledged by operator-user"},
		{"viewer", incs[0].ID, "403"},
		{"operator", "nope", "404 not_found"},
	} {
		c, err := diagnose.NewClient(r.url, r.tokens[tc.role], nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Acknowledge(context.Background(), tc.id, "again"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("client ack of %s as %s: %v, want %q", tc.id, tc.role, err, tc.want)
		}
	}

	// A restart keeps what the admin set: topology, SLOs and the
	// remediation policy, which takes precedence over the alerting file's.
	r.stop()
	r2 := startServer(t, r.dir)
	if n := len(r2.s.Topology().Hosts); n != 6 {
		t.Errorf("after restart: %d hosts, want 6", n)
	}
	if n := len(r2.s.alerting.engine.SLOs()); n != 2 {
		t.Errorf("after restart: %d SLOs, want 2", n)
	}
	code, body := r2.do(t, "viewer", "GET", "/api/v1/config/remediation", "")
	if code != 200 || !strings.Contains(body, `"source":"api"`) || !strings.Contains(body, `"name":"drain-links"`) || !strings.Contains(body, `"execute":true`) {
		t.Errorf("after restart: remediation %d %s", code, body)
	}
}

// TestDiagnoseUnderMutualTLS: with client certificates required on the API,
// the diagnose endpoint (which calls the server's own API) still answers,
// and a client without a certificate is refused at the handshake.
func TestDiagnoseUnderMutualTLS(t *testing.T) {
	ca := testpki.New(t, "meshlens test CA")
	srvCert, srvKey := ca.Issue(t, "server", x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := ca.Issue(t, "operator", x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	cert, err := tls.LoadX509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	r := startServer(t, "", func(c *Config, r *running) {
		c.HTTPTLS = bus.TLSFiles{Cert: srvCert, Key: srvKey, CA: ca.File}
		r.url = strings.Replace(r.url, "http://", "https://", 1)
		r.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	})
	code, body := r.do(t, "viewer", "GET", "/api/v1/diagnose/pair?src=dc1-pod1-rack1-h01&dst=dc1-pod1-rack2-h01&since=10m", "")
	if code != http.StatusOK || !strings.Contains(body, `"verdict"`) {
		t.Errorf("diagnose under mTLS: %d %s", code, body)
	}
	anonymous := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if resp, err := anonymous.Get(r.url + "/api/v1/topology"); err == nil {
		resp.Body.Close()
		t.Errorf("a client without a certificate got %s", resp.Status)
	}
}

func readAudit[E any](t *testing.T, path string) []E {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []E
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e E
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}
