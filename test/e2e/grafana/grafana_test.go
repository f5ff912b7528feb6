package grafana

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// The dashboards deploy/grafana ships, by uid.
var wantDashboards = []string{"meshlens-fabric", "meshlens-health", "meshlens-rack-pair", "meshlens-slos"}

// viewerToken is examples/tokens.yaml's viewer: what Grafana's datasource
// sends (MESHLENS_VIEWER_TOKEN).
const viewerToken = "viewer-example-token"

func grafanaDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(e2eutil.RepoRoot(t), "deploy", "grafana")
}

func datasourcesFile(t *testing.T) string {
	return filepath.Join(grafanaDir(t), "provisioning", "datasources", "meshlens.yaml")
}

func loadDashboards(t *testing.T) []*Dashboard {
	t.Helper()
	boards, err := LoadDashboards(filepath.Join(grafanaDir(t), "dashboards"))
	if err != nil {
		t.Fatal(err)
	}
	return boards
}

// documented is every metric family docs/metrics.md names.
func documented(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e2eutil.RepoRoot(t), "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile("`(meshlens_[a-z0-9_]+)`").FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = true
	}
	return out
}

// isDocumented: a family of docs/metrics.md (a histogram's series by its
// family), or one of the Go and process collectors every meshlens
// process registers.
func isDocumented(docs map[string]bool, name string) bool {
	if strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "go_") || docs[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && docs[base] {
			return true
		}
	}
	return false
}

// TestDashboardsAreWellFormed holds the dashboards and the provisioning
// files to what Grafana needs and users expect: every panel has a
// datasource (through a datasource variable whose default is a
// provisioned datasource), queries and a unique id; variables come from
// label_values; links point at shipped dashboards; every metric a query
// reads is one meshlens exports (docs/metrics.md).
func TestDashboardsAreWellFormed(t *testing.T) {
	boards := loadDashboards(t)
	var uids []string
	for _, d := range boards {
		uids = append(uids, d.UID)
	}
	slices.Sort(uids)
	if !slices.Equal(uids, wantDashboards) {
		t.Fatalf("dashboards %v, want %v", uids, wantDashboards)
	}
	dss, err := LoadDatasources(datasourcesFile(t), map[string]string{
		"MESHLENS_URL": "http://meshlens:9780", "MESHLENS_VIEWER_TOKEN": "t", "MESHLENS_PROMETHEUS_URL": "http://prometheus:9090"})
	if err != nil {
		t.Fatal(err)
	}
	provisioned := map[string]Datasource{}
	for _, ds := range dss {
		if ds.UID == "" || ds.Type != "prometheus" || ds.Access != "proxy" || !strings.HasPrefix(ds.URL, "http") {
			t.Errorf("datasource %+v: want a uid, type prometheus, access proxy and a URL", ds)
		}
		if _, dup := provisioned[ds.UID]; dup {
			t.Errorf("datasource uid %s provisioned twice", ds.UID)
		}
		if _, err := ds.TimeInterval(); err != nil {
			t.Errorf("datasource %s: %v", ds.Name, err)
		}
		provisioned[ds.UID] = ds
	}
	if h := provisioned["meshlens"].Headers().Get("Authorization"); h != "Bearer t" {
		t.Errorf("the meshlens datasource sends Authorization %q, want the viewer token from $MESHLENS_VIEWER_TOKEN", h)
	}
	checkProvider(t)

	docs := documented(t)
	titles := map[string]bool{}
	for _, d := range boards {
		t.Run(d.UID, func(t *testing.T) {
			if d.Title == "" || titles[d.Title] || d.SchemaVersion == 0 || d.file != d.UID+".json" {
				t.Errorf("%s: title %q (once), schemaVersion and a file named after the uid wanted", d.file, d.Title)
			}
			titles[d.Title] = true
			if _, err := ParseRelative(d.Time.From); err != nil {
				t.Error(err)
			}
			// A value for every variable, to parse the queries with.
			dummy := map[string]string{}
			dsVars := map[string]bool{}
			for _, v := range d.Templating.List {
				switch v.Type {
				case "datasource":
					dsVars[v.Name] = true
					if v.QueryText() != "prometheus" || provisioned[v.CurrentValue()].UID == "" {
						t.Errorf("datasource variable %s: type %q, default %q: want prometheus and a provisioned uid", v.Name, v.QueryText(), v.CurrentValue())
					}
				case "query":
					if !labelValuesQuery.MatchString(v.QueryText()) {
						t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, v.QueryText())
					}
					if v.Datasource == nil || !dsVars[strings.Trim(v.Datasource.UID, "${}")] {
						t.Errorf("variable %s: datasource %+v is not a datasource variable defined before it", v.Name, v.Datasource)
					}
				default:
					t.Errorf("variable %s: type %q (only datasource and query variables are checked here)", v.Name, v.Type)
				}
				dummy[v.Name] = "x"
			}
			maps.Copy(dummy, Builtins(&Client{Interval: 10 * time.Second, RateInterval: 40 * time.Second}, time.Hour))
			usesDS := func(ref *DatasourceRef) bool {
				return ref != nil && ref.Type == "prometheus" && strings.HasPrefix(ref.UID, "${") && dsVars[strings.Trim(ref.UID, "${}")]
			}
			ids := map[int]bool{}
			for _, p := range d.AllPanels() {
				if p.ID <= 0 || ids[p.ID] {
					t.Errorf("panel %q: id %d is not unique", p.Title, p.ID)
				}
				ids[p.ID] = true
				if p.Title == "" || p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
					t.Errorf("panel %d: a title and a position wanted", p.ID)
				}
				if p.Type == "row" {
					if len(p.Targets) > 0 {
						t.Errorf("row %q has queries", p.Title)
					}
					continue
				}
				if !usesDS(p.Datasource) {
					t.Errorf("panel %q: datasource %+v is not one of the dashboard's datasource variables", p.Title, p.Datasource)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no query", p.Title)
				}
				refIDs := map[string]bool{}
				for _, tg := range p.Targets {
					if tg.RefID == "" || refIDs[tg.RefID] || tg.Expr == "" {
						t.Errorf("panel %q: target %+v: a unique refId and an expression wanted", p.Title, tg)
					}
					refIDs[tg.RefID] = true
					if tg.Datasource != nil && *tg.Datasource != *p.Datasource {
						t.Errorf("panel %q: target %s's datasource %+v is not the panel's", p.Title, tg.RefID, tg.Datasource)
					}
					expr, err := parser.NewParser(parser.Options{}).ParseExpr(Interpolate(tg.Expr, dummy))
					if err != nil {
						t.Errorf("panel %q: target %s: %v", p.Title, tg.RefID, err)
						continue
					}
					parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
						if vs, ok := n.(*parser.VectorSelector); ok && !isDocumented(docs, vs.Name) {
							t.Errorf("panel %q: target %s reads %q, which docs/metrics.md does not list", p.Title, tg.RefID, vs.Name)
						}
						return nil
					})
				}
				for _, l := range p.FieldConfig.Defaults.Links {
					if _, rest, ok := strings.Cut(l.URL, "/d/"); ok {
						if uid, _, _ := strings.Cut(rest, "/"); !slices.Contains(wantDashboards, uid) {
							t.Errorf("panel %q links to dashboard %q, which is not shipped", p.Title, uid)
						}
					}
				}
			}
		})
	}
}

// checkProvider: the dashboards provider reads files from one path.
func checkProvider(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(grafanaDir(t), "provisioning", "dashboards", "meshlens.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name, Folder, Type    string
			DisableDeletion       bool `yaml:"disableDeletion"`
			AllowUIUpdates        bool `yaml:"allowUiUpdates"`
			UpdateIntervalSeconds int  `yaml:"updateIntervalSeconds"`
			Options               struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("dashboards provider: %v", err)
	}
	if f.APIVersion != 1 || len(f.Providers) != 1 || f.Providers[0].Type != "file" || f.Providers[0].Options.Path == "" {
		t.Errorf("dashboards provider %+v: want apiVersion 1 and one file provider with a path", f)
	}
}

// TestPanelsAnswerOnALiveFabric runs every panel's every query, as Grafana
// would, against a live fabric: a meshlens server with the example SLOs
// and tokens, real agents probing each other on loopback but for one host
// that has none (a dead host, so the localizer blames something and there
// is loss to see), and a real Prometheus scraping the server and the
// agents. Variables take the first value label_values gives, then "All"
// where a variable offers it. A query the datasource refuses fails at
// once; one that answers nothing fails once the fabric had its time.
func TestPanelsAnswerOnALiveFabric(t *testing.T) {
	e2eutil.Require(t, "prometheus")
	bin := e2eutil.Binary(t)
	root := e2eutil.RepoRoot(t)
	dir := t.TempDir()
	t0 := time.Now()

	// examples/slos.yaml's fabric (the README's), on addresses of its own.
	topoFile := filepath.Join(dir, "fabric.yaml")
	topo := e2eutil.Topology(t, topoFile, bin, "topo", "gen", "--dcs", "1", "--pods", "2", "--racks-per-pod", "2",
		"--hosts-per-rack", "2", "--leaves-per-pod", "2", "--spines", "2", "--base-addr", "127.13.0.1")
	srv := e2eutil.StartServer(t, nil, bin, "--topology", topoFile, "--data-dir", filepath.Join(dir, "data"),
		"--window", "2s", "--lateness", "2s", "--probe-interval", "1s", "--probe-timeout", "500ms",
		"--slo", filepath.Join(root, "examples", "slos.yaml"), "--slo-interval", "2s",
		"--tokens-file", filepath.Join(root, "examples", "tokens.yaml"))
	e2eutil.WaitHTTP(t, srv.HTTPURL+"/readyz", time.Minute)
	var agents []string
	for _, h := range topo.Hosts[:len(topo.Hosts)-1] {
		addr := testkit.LoopbackAddr(t)
		e2eutil.Start(t, "agent "+h.Name, nil, bin, "agent", "--host", h.Name, "--nats-url", srv.NATSURL,
			"--metrics-addr", addr, "--spool-dir", filepath.Join(dir, "spool", h.Name))
		agents = append(agents, fmt.Sprintf("%q", addr))
	}

	promAddr := testkit.LoopbackAddr(t)
	promCfg := filepath.Join(dir, "prometheus.yml")
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s}
scrape_configs:
  - job_name: meshlens-server
    authorization: {credentials: %s}
    static_configs: [{targets: [%q]}]
  - job_name: meshlens-agent
    static_configs: [{targets: [%s]}]
`, viewerToken, srv.HTTPAddr, strings.Join(agents, ", "))
	if err := os.WriteFile(promCfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e2eutil.Start(t, "prometheus", nil, "prometheus", "--config.file="+promCfg,
		"--storage.tsdb.path="+filepath.Join(dir, "prometheus"), "--web.listen-address="+promAddr)
	e2eutil.WaitHTTP(t, "http://"+promAddr+"/-/ready", time.Minute)

	// The datasources as Grafana provisions them from this environment.
	dss, err := LoadDatasources(datasourcesFile(t), map[string]string{
		"MESHLENS_URL": srv.HTTPURL, "MESHLENS_VIEWER_TOKEN": viewerToken, "MESHLENS_PROMETHEUS_URL": "http://" + promAddr})
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]*Client{}
	for _, ds := range dss {
		if clients[ds.UID], err = NewClient(ds); err != nil {
			t.Fatal(err)
		}
	}
	boards := loadDashboards(t)
	var ran int
	testkit.CheckFor(t, 80*time.Second, 2*time.Second, func() error {
		ran = 0
		var empty []string
		for _, d := range boards {
			for _, all := range []bool{false, true} {
				n, e, err := runDashboard(d, clients, all)
				var bad *e2eutil.PromError
				if errors.As(err, &bad) && bad.StatusCode/100 == 4 {
					t.Fatalf("%s: a query the datasource refuses: %v", d.UID, err)
				}
				if err != nil {
					return fmt.Errorf("%s: %w", d.UID, err)
				}
				ran += n
				empty = append(empty, e...)
			}
		}
		if len(empty) > 0 {
			return fmt.Errorf("%d of %d queries answer nothing:\n%s", len(empty), ran, strings.Join(empty, "\n"))
		}
		return nil
	})
	t.Logf("%d queries of %d dashboards answered, %v after the start", ran, len(boards), time.Since(t0).Round(time.Second))
}

// runDashboard resolves d's variables and runs every query of every panel
// once: with each variable's first value, or with "All" where a variable
// offers it (all). It returns the queries run and those that answered
// nothing.
func runDashboard(d *Dashboard, clients map[string]*Client, all bool) (ran int, empty []string, err error) {
	rng, err := ParseRelative(d.Time.From)
	if err != nil {
		return 0, nil, err
	}
	end := time.Now()
	start := end.Add(-rng)
	vars := map[string]string{}
	client := func(ref *DatasourceRef) (*Client, error) {
		uid := Interpolate(ref.UID, vars)
		if c := clients[uid]; c != nil {
			return c, nil
		}
		return nil, fmt.Errorf("no provisioned datasource %q", uid)
	}
	for _, v := range d.Templating.List {
		if v.Type == "datasource" {
			vars[v.Name] = v.CurrentValue()
			continue
		}
		c, err := client(v.Datasource)
		if err != nil {
			return 0, nil, err
		}
		values, err := c.LabelValues(Interpolate(v.QueryText(), vars), start, end)
		if err != nil {
			return 0, nil, fmt.Errorf("variable %s: %w", v.Name, err)
		}
		switch {
		case len(values) == 0:
			return 0, []string{fmt.Sprintf("%s: variable %s: %s has no values", d.UID, v.Name, v.QueryText())}, nil
		case all && v.IncludeAll:
			vars[v.Name] = v.AllValue
		case v.Multi || v.IncludeAll:
			vars[v.Name] = regexEscape(values[0])
		default:
			vars[v.Name] = values[0]
		}
	}
	for _, p := range d.AllPanels() {
		for _, tg := range p.Targets {
			ref := p.Datasource
			if tg.Datasource != nil {
				ref = tg.Datasource
			}
			c, err := client(ref)
			if err != nil {
				return ran, empty, fmt.Errorf("panel %q: %w", p.Title, err)
			}
			with := maps.Clone(vars)
			maps.Copy(with, Builtins(c, rng))
			expr := Interpolate(tg.Expr, with)
			if strings.Contains(expr, "$") {
				return ran, empty, fmt.Errorf("panel %q: %s: a variable no one defines: %s", p.Title, tg.RefID, expr)
			}
			n, err := c.Query(expr, tg.Instant, start, end)
			if err != nil {
				return ran, empty, fmt.Errorf("panel %q: %s: %s: %w", p.Title, tg.RefID, expr, err)
			}
			ran++
			if n == 0 {
				empty = append(empty, fmt.Sprintf("%s / %s [%s] (%v): %s", d.UID, p.Title, tg.RefID, vars, expr))
			}
		}
	}
	return ran, empty, nil
}
