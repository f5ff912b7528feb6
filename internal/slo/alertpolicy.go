package slo

import (
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/internal/yamlfile"
)

// OpenSLO alert policies honoured as burn-rate tiers: an SLO's
// spec.alertPolicies (inline or by alertPolicyRef) whose conditions
// (inline or by conditionRef) are of kind burnrate become the SLO's tiers,
// one per condition: its threshold the factor, its lookbackWindow the long
// window, a twelfth of it (the Workbook's ratio, at least a minute) the
// short one, alertAfter the for duration, its severity the severity.
// Notification targets are not meshlens's business (Alertmanager routes on
// the labels) and are ignored with a warning.

type openAlertCondition struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   openMeta `yaml:"metadata"`
	Spec       struct {
		Description string `yaml:"description"`
		Severity    string `yaml:"severity"`
		Condition   struct {
			Kind           string   `yaml:"kind"`
			Op             string   `yaml:"op"`
			Threshold      *float64 `yaml:"threshold"`
			LookbackWindow string   `yaml:"lookbackWindow"`
			AlertAfter     string   `yaml:"alertAfter"`
		} `yaml:"condition"`
	} `yaml:"spec"`
}

type openConditionRef struct {
	ConditionRef       string `yaml:"conditionRef"`
	openAlertCondition `yaml:",inline"`
}

type openAlertPolicy struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   openMeta `yaml:"metadata"`
	Spec       struct {
		Description         string             `yaml:"description"`
		AlertWhenNoData     bool               `yaml:"alertWhenNoData"`
		AlertWhenResolved   bool               `yaml:"alertWhenResolved"`
		AlertWhenBreaching  bool               `yaml:"alertWhenBreaching"`
		Conditions          []openConditionRef `yaml:"conditions"`
		NotificationTargets []yaml.Node        `yaml:"notificationTargets"`
	} `yaml:"spec"`
}

type openPolicyRef struct {
	AlertPolicyRef  string `yaml:"alertPolicyRef"`
	openAlertPolicy `yaml:",inline"`
}

// namedObject is an alert object of some file, kept for references.
type namedObject struct {
	o    object
	used bool
}

// tier turns a burnrate condition into a tier, or says why it cannot.
func (c *openAlertCondition) tier() (Tier, error) {
	cd := c.Spec.Condition
	if cd.Kind != "burnrate" {
		return Tier{}, fmt.Errorf("condition kind %q: only burnrate conditions map onto meshlens's tiers", cd.Kind)
	}
	if cd.Op != "" && cd.Op != "gte" && cd.Op != "gt" {
		return Tier{}, fmt.Errorf("op %q: a burn-rate tier fires above its threshold (gt or gte)", cd.Op)
	}
	if cd.Threshold == nil || *cd.Threshold < 1 {
		return Tier{}, fmt.Errorf("threshold: want a burn rate of 1 or more (below 1 the budget outlasts the window)")
	}
	n, unit, err := parseOpenDuration(cd.LookbackWindow)
	if err != nil || !strings.ContainsRune("mhdw", rune(unit)) {
		return Tier{}, fmt.Errorf("lookbackWindow %q: want a duration like 1h, 6h or 1d", cd.LookbackWindow)
	}
	long := map[byte]time.Duration{'m': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[unit] * time.Duration(n)
	t := Tier{
		Name:     c.Metadata.Name,
		Factor:   *cd.Threshold,
		Long:     long,
		Short:    max((long / 12).Round(time.Second), time.Minute),
		Severity: c.Spec.Severity,
	}
	if t.Short >= t.Long {
		return Tier{}, fmt.Errorf("lookbackWindow %q: too short for a short window of a twelfth of it", cd.LookbackWindow)
	}
	if t.Severity == "" {
		t.Severity = SeverityPage
	}
	if cd.AlertAfter != "" {
		if t.For, err = parseDuration(cd.AlertAfter); err != nil {
			return Tier{}, fmt.Errorf("alertAfter: %v", err)
		}
	}
	return t, nil
}

// policyTiers resolves an SLO's spec.alertPolicies into tiers. Problems
// are reported at the SLO's policy entry; warnings name what is ignored.
func (c *parseCtx) policyTiers(nodes []yaml.Node, p, w *yamlfile.Problems) []Tier {
	var tiers []Tier
	names := map[string]bool{}
	for i := range nodes {
		pb := yamlfile.Path("spec", "alertPolicies", i)
		var ref openPolicyRef
		if err := nodes[i].Decode(&ref); err != nil {
			p.Addf(pb, "want {alertPolicyRef: NAME} or an inline AlertPolicy")
			continue
		}
		pol := &ref.openAlertPolicy
		if ref.AlertPolicyRef != "" {
			no, ok := c.alertPolicies[ref.AlertPolicyRef]
			if !ok {
				p.Addf(at(pb, "alertPolicyRef"), "%q: no AlertPolicy of that name in the files given", ref.AlertPolicyRef)
				continue
			}
			no.used = true
			pol = &openAlertPolicy{}
			if _, err := decode(no.o.file, no.o.data, pol); err != nil {
				p.Addf(pb, "AlertPolicy %q: %v", ref.AlertPolicyRef, err)
				continue
			}
		}
		if len(pol.Spec.NotificationTargets) > 0 {
			w.Addf(pb, "notification targets ignored: Alertmanager routes meshlens's alerts on their labels (slo, tier, severity, service)")
		}
		for j, cr := range pol.Spec.Conditions {
			// An inline policy's problems are at its condition; a referred
			// one's at the reference (its own file holds the rest).
			cb := pb
			if ref.AlertPolicyRef == "" {
				cb = at(pb, "spec", "conditions", j)
			}
			cond := &cr.openAlertCondition
			if cr.ConditionRef != "" {
				no, ok := c.alertConditions[cr.ConditionRef]
				if !ok {
					p.Addf(cb, "conditionRef %q: no AlertCondition of that name in the files given", cr.ConditionRef)
					continue
				}
				no.used = true
				cond = &openAlertCondition{}
				if _, err := decode(no.o.file, no.o.data, cond); err != nil {
					p.Addf(cb, "AlertCondition %q: %v", cr.ConditionRef, err)
					continue
				}
			}
			t, err := cond.tier()
			if err != nil {
				p.Addf(cb, "AlertCondition %q: %v", cond.Metadata.Name, err)
				continue
			}
			if !nameRE.MatchString(t.Name) || names[t.Name] {
				p.Addf(cb, "AlertCondition %q: want a unique name like fast-burn", t.Name)
				continue
			}
			names[t.Name] = true
			tiers = append(tiers, t)
		}
	}
	return tiers
}
