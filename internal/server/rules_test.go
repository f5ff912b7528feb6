package server

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/analyze"
	"github.com/meshlens/meshlens/internal/slo"
	"github.com/meshlens/meshlens/internal/testkit"
)

// startPrometheus runs the real prometheus (Debian's package, which CI
// installs) on loopback with extra flags and the rule files given as
// contents, and returns its URL; it is stopped when the test ends.
func startPrometheus(t *testing.T, flags []string, rules ...string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not found (CI installs the Debian prometheus package): %v", err)
	}
	dir := t.TempDir()
	cfg := "global: {evaluation_interval: 1s}\nrule_files:\n"
	for i, r := range rules {
		p := filepath.Join(dir, fmt.Sprintf("rules%d.yml", i))
		if err := os.WriteFile(p, []byte(r), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg += "  - " + p + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testkit.LoopbackAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"--config.file=" + filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr, "--log.level=warn"}, flags...)
	cmd := exec.CommandContext(ctx, bin, args...)
	logPath := filepath.Join(dir, "prometheus.log")
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close() // the child has its own descriptor
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	url := "http://" + addr
	testkit.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("prometheus not ready: %s\n%s", resp.Status, log)
		}
		return nil
	})
	return url
}

// getData GETs a Prometheus API URL, with a bearer token when set, and
// decodes the data of its answer.
func getData(t *testing.T, url, token string, out any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	if env.Status != "success" {
		t.Fatalf("%s: %s %s", url, env.Status, env.Error)
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

type jsonObject = map[string]any

// keys are the field names of a JSON object.
func keys(o jsonObject) []string { return slices.Sorted(maps.Keys(o)) }

// TestRulesAsPrometheusListsThem: a real Prometheus loaded with the rules
// `meshlens slo rules` generates for this server's SLOs lists the same
// groups and rules as the server's /api/v1/rules, field for field, and
// the server's alerts have the fields and formats of Prometheus's.
func TestRulesAsPrometheusListsThem(t *testing.T) {
	r := startServer(t, "")
	slos, err := slo.Load(filepath.Join(r.dir, "slos.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	generated, err := slo.GenerateRules(slos, slo.RulesOptions{Interval: time.Hour, DataDelay: analyze.EvidenceDelay(r.s.cfg.Aggregate)})
	if err != nil {
		t.Fatal(err)
	}
	// A rule that fires at once gives Prometheus an alert to compare with.
	const always = "groups:\n  - name: always\n    rules:\n      - alert: Always\n        expr: vector(1)\n        labels: {severity: page}\n        annotations: {summary: always}\n"
	prom := startPrometheus(t, nil, string(generated), always)

	// The SLO's first tier fires in meshlens.
	burn, tier := 20.0, slos[0].Tiers[0]
	r.s.alerting.mgr.ObserveSLOs(time.Now(), []slo.Status{{Name: "fabric-availability", Scope: &slo.Scope{DC: "dc1"},
		Tiers: []slo.TierStatus{{Name: tier.Name, Severity: tier.Severity, Factor: tier.Factor, Long: tier.Long.String(), Short: tier.Short.String(), Firing: true, LongBurn: &burn, ShortBurn: &burn}}}})

	type discovery struct {
		Groups []jsonObject `json:"groups"`
	}
	var theirs discovery
	testkit.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		getData(t, prom+"/api/v1/rules", "", &theirs)
		for _, g := range theirs.Groups {
			if g["name"] == "always" && g["rules"].([]any)[0].(jsonObject)["state"] == "firing" {
				return nil
			}
		}
		return fmt.Errorf("prometheus has not evaluated its rules yet")
	})
	var ours discovery
	getData(t, r.url+"/api/v1/rules", r.tokens["viewer"], &ours)

	byName := func(gs []jsonObject) map[string]jsonObject {
		m := map[string]jsonObject{}
		for _, g := range gs {
			m[g["name"].(string)] = g
		}
		return m
	}
	theirGroups, ourGroups := byName(theirs.Groups), byName(ours.Groups)
	var alwaysRule jsonObject
	for name, tg := range theirGroups {
		if name == "always" {
			alwaysRule = tg["rules"].([]any)[0].(jsonObject)
			continue
		}
		og, ok := ourGroups[name]
		if !ok {
			t.Errorf("group %s: Prometheus has it, meshlens does not", name)
			continue
		}
		checkKeys(t, "group "+name, tg, og)
		if tg["interval"] != og["interval"] {
			t.Errorf("group %s: interval %v, Prometheus %v", name, og["interval"], tg["interval"])
		}
		tr, or := tg["rules"].([]any), og["rules"].([]any)
		if len(tr) != len(or) {
			t.Fatalf("group %s: %d rules, Prometheus %d", name, len(or), len(tr))
		}
		for i := range tr {
			tr, or := tr[i].(jsonObject), or[i].(jsonObject)
			what := fmt.Sprintf("group %s rule %d (%v)", name, i, tr["name"])
			checkKeys(t, what, tr, or)
			for _, field := range []string{"name", "query", "duration", "labels", "annotations", "type"} {
				if a, b := fmt.Sprint(or[field]), fmt.Sprint(tr[field]); a != b {
					t.Errorf("%s: %s\n  meshlens   %s\n  Prometheus %s", what, field, a, b)
				}
			}
			if tr["type"] == "alerting" && tr["state"] != "inactive" {
				t.Errorf("%s: Prometheus (without data) says %v", what, tr["state"])
			}
		}
	}
	// Prometheus has "always" where meshlens has the localizer's.
	if _, ok := ourGroups[LocalizerRuleGroup]; !ok || len(ourGroups) != len(theirGroups) {
		t.Errorf("meshlens groups %v, Prometheus %v", slices.Sorted(maps.Keys(ourGroups)), slices.Sorted(maps.Keys(theirGroups)))
	}

	// The firing SLO alert, in its tier's rule and in /api/v1/alerts.
	var fast jsonObject
	for _, rule := range ourGroups["meshlens-slo-fabric-availability"]["rules"].([]any) {
		if rule := rule.(jsonObject); rule["type"] == "alerting" && rule["labels"].(jsonObject)["tier"] == tier.Name {
			fast = rule
		}
	}
	if fast == nil || fast["state"] != "firing" || len(fast["alerts"].([]any)) != 1 {
		t.Fatalf("tier %s's rule: %v", tier.Name, fast)
	}
	checkKeys(t, "firing rule", alwaysRule, fast)
	theirAlert, ourAlert := alwaysRule["alerts"].([]any)[0].(jsonObject), fast["alerts"].([]any)[0].(jsonObject)
	checkKeys(t, "alert", theirAlert, ourAlert)
	for what, a := range map[string]jsonObject{"Prometheus": theirAlert, "meshlens": ourAlert} {
		if _, err := time.Parse(time.RFC3339Nano, a["activeAt"].(string)); err != nil {
			t.Errorf("%s alert activeAt: %v", what, err)
		}
		if _, err := strconv.ParseFloat(a["value"].(string), 64); err != nil {
			t.Errorf("%s alert value: %v", what, err)
		}
	}
	if ourAlert["value"] != "2e+01" || ourAlert["labels"].(jsonObject)["alertname"] != slo.AlertName {
		t.Errorf("alert %v", ourAlert)
	}

	var theirAlerts, ourAlerts struct {
		Alerts []jsonObject `json:"alerts"`
	}
	getData(t, prom+"/api/v1/alerts", "", &theirAlerts)
	getData(t, r.url+"/api/v1/alerts", r.tokens["viewer"], &ourAlerts)
	if len(theirAlerts.Alerts) != 1 || len(ourAlerts.Alerts) != 1 {
		t.Fatalf("alerts: meshlens %v, Prometheus %v", ourAlerts, theirAlerts)
	}
	checkKeys(t, "/api/v1/alerts", theirAlerts.Alerts[0], ourAlerts.Alerts[0])
	if ourAlerts.Alerts[0]["labels"].(jsonObject)["slo"] != "fabric-availability" {
		t.Errorf("/api/v1/alerts: %v", ourAlerts.Alerts[0])
	}

	// An evaluation (no data: nothing fires) is the rules' last one.
	evalAt := time.Now()
	if _, err := r.s.alerting.engine.EvaluateAt(context.Background(), evalAt); err != nil {
		t.Fatal(err)
	}
	getData(t, r.url+"/api/v1/rules?rule_group[]=meshlens-slo-fabric-availability", r.tokens["viewer"], &ours)
	for _, rule := range ours.Groups[0]["rules"].([]any) {
		rule := rule.(jsonObject)
		last, err := time.Parse(time.RFC3339Nano, rule["lastEvaluation"].(string))
		if err != nil || !last.Equal(evalAt.UTC()) || rule["health"] != "ok" || rule["type"] == "alerting" && rule["state"] != "inactive" {
			t.Errorf("after an evaluation at %s: %v", evalAt.UTC(), rule)
		}
	}
}

// checkKeys fails when meshlens's object lacks a field Prometheus's has.
func checkKeys(t *testing.T, what string, theirs, ours jsonObject) {
	t.Helper()
	for _, k := range keys(theirs) {
		if _, ok := ours[k]; !ok {
			t.Errorf("%s: no field %q (Prometheus: %v; meshlens: %v)", what, k, keys(theirs), keys(ours))
		}
	}
}

// TestTSDBMetadataIsDocumented: the families /api/v1/metadata describes
// are those docs/metrics.md lists as written to the TSDB, no more, no less.
func TestTSDBMetadataIsDocumented(t *testing.T) {
	docs, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	section, _, _ := strings.Cut(string(docs), "## Server self-metrics")
	_, section, _ = strings.Cut(section, "## Data series in the TSDB")
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("`(meshlens_[a-z0-9_]+)`").FindAllStringSubmatch(section, -1) {
		listed[m[1]] = true
	}
	for family, md := range tsdbMetadata {
		names := []string{family}
		if md.Type == "histogram" {
			// What the TSDB holds and the docs name.
			names = []string{family + "_bucket", family + "_sum", family + "_count"}
		}
		for _, name := range names {
			if !listed[name] {
				t.Errorf("%s (%s) is not in docs/metrics.md's TSDB section", name, md.Type)
			}
			delete(listed, name)
		}
	}
	for name := range listed {
		t.Errorf("docs/metrics.md lists %s in the TSDB, and it has no metadata", name)
	}
}
