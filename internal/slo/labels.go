package slo

import (
	"fmt"
	"sort"
	"strings"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/internal/yamlfile"
)

// reservedLabels are set by meshlens on every alert and rule of an SLO; a
// user label of that name would be overwritten or break de-duplication.
// Each maps to the name suggested instead.
var reservedLabels = map[string]string{
	"slo":       "objective",
	"tier":      "slo_tier",
	"severity":  "priority (or set per-tier severities under alerting)",
	"alertname": "alert_group",
}

// labelValues is an OpenSLO label value: a string or a list of strings
// (openslo/v1 allows both).
type labelValues []string

func (v *labelValues) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*v = labelValues{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(labelValues, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: a label value is a string or a list of strings", c.Line)
			}
			out = append(out, c.Value)
		}
		*v = out
		return nil
	}
	return fmt.Errorf("line %d: a label value is a string or a list of strings", n.Line)
}

// promLabelName maps a label key onto a Prometheus label name: every
// character outside [a-zA-Z0-9_] becomes '_', and a leading digit gets a
// '_' before it (app.kubernetes.io/part-of is app_kubernetes_io_part_of).
func promLabelName(k string) string {
	var b strings.Builder
	for i, r := range k {
		switch {
		case r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
			b.WriteRune(r)
		case r >= '0' && r <= '9':
			if i == 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// openLabels turns OpenSLO labels into Prometheus labels: keys Prometheus
// cannot carry are renamed (with a warning), lists are joined with commas,
// reserved names and keys that collide once renamed are errors.
func openLabels(in map[string]labelValues, p, warn *yamlfile.Problems, base []any) map[string]string {
	if len(in) == 0 {
		return nil
	}
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]string, len(in))
	from := map[string]string{}
	for _, k := range keys {
		name := promLabelName(k)
		if alt, ok := reservedLabels[name]; ok {
			p.Addf(at(base, k), "%q is set by meshlens on every alert; call it %s", k, alt)
			continue
		}
		if strings.HasPrefix(name, "__") {
			p.Addf(at(base, k), "%q: names starting with __ are reserved by Prometheus; call it %s", k, strings.TrimLeft(name, "_"))
			continue
		}
		if prev, dup := from[name]; dup {
			p.Addf(at(base, k), "%q and %q are both the Prometheus label %s; rename one", prev, k, name)
			continue
		}
		from[name] = k
		if name != k {
			warn.Addf(at(base, k), "%q is not a Prometheus label name: alerts and rules carry it as %s", k, name)
		}
		out[name] = strings.Join(in[k], ",")
	}
	return out
}

// checkNativeLabels refuses what meshlens's own format cannot carry,
// naming the label it could be instead.
func checkNativeLabels(in map[string]string, p *yamlfile.Problems, base []any) {
	for k := range in {
		switch alt, reserved := reservedLabels[k]; {
		case reserved:
			p.Addf(at(base, k), "%q is set by meshlens on every alert; call it %s", k, alt)
		case strings.HasPrefix(k, "__"):
			p.Addf(at(base, k), "%q: names starting with __ are reserved by Prometheus; call it %s", k, strings.TrimLeft(promLabelName(k), "_"))
		case !model.LegacyValidation.IsValidLabelName(k):
			p.Addf(at(base, k), "%q is not a Prometheus label name; call it %s", k, promLabelName(k))
		}
	}
}
