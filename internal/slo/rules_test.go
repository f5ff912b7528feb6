package slo

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

func TestRulesPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (CI installs the Debian prometheus package): %v", err)
	}
	slos, err := Load("testdata/fabric.yaml", "testdata/openslo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, delay := range []time.Duration{0, 40 * time.Second} {
		t.Run("delay "+delay.String(), func(t *testing.T) { rulesPassPromtool(t, promtool, slos, delay) })
	}
}

func rulesPassPromtool(t *testing.T, promtool string, slos []SLO, delay time.Duration) {
	out, err := GenerateRules(slos, RulesOptions{Interval: 30 * time.Second, DataDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "check", "rules", p)
	msg, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s\n--- rules:\n%s", err, msg, out)
	}
	// 4 SLOs; dc1 has 4 tiers (7 windows), rack-latency 3 tiers (6
	// windows), checkout 1 tier (2 windows), api 4 tiers (7 windows).
	if !strings.Contains(string(msg), "SUCCESS: 4") {
		t.Logf("promtool: %s", msg)
	}
	if n := strings.Count(string(out), "alert: "+AlertName); n != 12 {
		t.Errorf("%d alerts, want 12", n)
	}
}

// TestRulesDataDelay: with a data delay, every selector of every rule is
// offset by it, and nothing else changes.
func TestRulesDataDelay(t *testing.T) {
	slos, err := Load("testdata/fabric.yaml", "testdata/openslo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const delay = 40 * time.Second
	plain, err := GenerateRules(slos, RulesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delayed, err := GenerateRules(slos, RulesOptions{DataDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	var a, b RuleFile
	if err := yaml.Unmarshal(plain, &a); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(delayed, &b); err != nil {
		t.Fatal(err)
	}
	if len(a.Groups) != len(b.Groups) {
		t.Fatalf("%d groups, %d delayed", len(a.Groups), len(b.Groups))
	}
	p := parser.NewParser(parser.Options{})
	// Only SLOs of meshlens's counters are delayed (the user's own metrics
	// are not late).
	delayedGroup := map[string]bool{}
	for _, s := range slos {
		delayedGroup["meshlens-slo-"+s.Name] = s.ReadsMeshlensCounters()
	}
	if !delayedGroup["meshlens-slo-dc1-availability"] || delayedGroup["meshlens-slo-api-availability"] {
		t.Fatalf("delayed groups: %v", delayedGroup)
	}
	selectors := 0
	for i := range a.Groups {
		if len(a.Groups[i].Rules) != len(b.Groups[i].Rules) {
			t.Fatalf("group %s: %d rules, %d delayed", a.Groups[i].Name, len(a.Groups[i].Rules), len(b.Groups[i].Rules))
		}
		for j, ra := range a.Groups[i].Rules {
			rb := b.Groups[i].Rules[j]
			ea, err := p.ParseExpr(ra.Expr)
			if err != nil {
				t.Fatal(err)
			}
			eb, err := p.ParseExpr(rb.Expr)
			if err != nil {
				t.Fatal(err)
			}
			want := time.Duration(0)
			if delayedGroup[a.Groups[i].Name] {
				want = delay
			}
			// Every selector is delayed (on top of its own offset: a long
			// window's start); undone, the expressions are equal.
			var own []time.Duration
			parser.Inspect(ea, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					own = append(own, vs.OriginalOffset)
				}
				return nil
			})
			k := 0
			parser.Inspect(eb, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok && k < len(own) {
					selectors++
					if vs.OriginalOffset != own[k]+want {
						t.Errorf("%s: selector %s has offset %v, want %v", rb.Expr, vs.Name, vs.OriginalOffset, own[k]+want)
					}
					vs.OriginalOffset = own[k]
					k++
				}
				return nil
			})
			if ea.String() != eb.String() {
				t.Errorf("delayed rule differs beyond its offsets:\n%s\n%s", ea, eb)
			}
			ra.Expr, rb.Expr = "", ""
			if !reflect.DeepEqual(ra, rb) {
				t.Errorf("delayed rule's other fields differ: %+v, %+v", ra, rb)
			}
		}
	}
	if selectors == 0 {
		t.Fatal("no selector in the rules")
	}
	if _, err := GenerateRules(slos, RulesOptions{DataDelay: -time.Second}); err == nil {
		t.Error("a negative delay is accepted")
	}
}

// TestRulesPrintCleanNumbers: budgets are computed (1 - 0.999 is
// 0.0010000000000000009 in binary); the rules print them as written.
func TestRulesPrintCleanNumbers(t *testing.T) {
	slos, err := Load("testdata/fabric.yaml", "testdata/openslo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := GenerateRules(slos, RulesOptions{Interval: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slos {
		budget := fmtFloat(s.Budget())
		if strings.Contains(budget, "0000") || strings.Contains(budget, "9999") {
			t.Errorf("SLO %s (target %v): budget printed %s", s.Name, s.Target, budget)
		}
	}
	for _, ugly := range []string{"00000000", "99999999"} {
		if i := strings.Index(string(out), ugly); i >= 0 {
			t.Errorf("the rules print %q: …%s…", ugly, out[max(0, i-40):min(len(out), i+40)])
		}
	}
	if got := fmtFloat(1 - 0.9999*float64(len(slos))/float64(len(slos))); got != "0.0001" {
		t.Errorf("1 - 0.9999 printed %s", got)
	}
}

// A time-slice SLO over meshlens's counters is delayed as a whole: each
// subquery is shifted (so that it judges the slices meshlens judges) and
// the selectors inside it are not; the selectors outside are.
func TestSliceRulesDataDelay(t *testing.T) {
	slos, err := Parse(File{Name: "f.yaml", Data: []byte(`apiVersion: openslo/v1
kind: SLO
metadata: {name: rack-slices}
spec:
  budgetingMethod: Timeslices
  timeWindow: [{duration: 7d, isRolling: true}]
  objectives: [{target: 0.99, timeSliceTarget: 0.999, timeSliceWindow: 1m}]
  indicator:
    spec:
      ratioMetric:
        counter: true
        bad: {metricSource: {type: Prometheus, spec: {query: sum(meshlens_rack_pair_probes_lost_total)}}}
        total: {metricSource: {type: Prometheus, spec: {query: sum(meshlens_rack_pair_probes_total)}}}
`)})
	if err != nil {
		t.Fatal(err)
	}
	const delay = 40 * time.Second
	f, err := Rules(slos, RulesOptions{DataDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	subqueries, outside := 0, 0
	for _, r := range f.Groups[0].Rules {
		e, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
		if err != nil {
			t.Fatal(err)
		}
		parser.Inspect(e, func(n parser.Node, path []parser.Node) error {
			inSub := false
			for _, p := range path {
				if _, ok := p.(*parser.SubqueryExpr); ok {
					inSub = true
				}
			}
			switch n := n.(type) {
			case *parser.SubqueryExpr:
				subqueries++
				if n.OriginalOffset != delay || n.Step != time.Minute || n.Range%time.Minute != time.Minute-time.Millisecond {
					t.Errorf("%s: subquery [%v:%v] offset %v", r.Expr, n.Range, n.Step, n.OriginalOffset)
				}
			case *parser.VectorSelector:
				switch {
				case inSub && n.OriginalOffset != 0:
					t.Errorf("%s: selector %s inside a subquery has offset %v", r.Expr, n.Name, n.OriginalOffset)
				case !inSub && n.OriginalOffset != delay:
					t.Errorf("%s: selector %s has offset %v, want %v", r.Expr, n.Name, n.OriginalOffset, delay)
				case !inSub:
					outside++
				}
			}
			return nil
		})
	}
	if subqueries == 0 || outside == 0 {
		t.Fatalf("%d subqueries, %d selectors outside them", subqueries, outside)
	}
}
