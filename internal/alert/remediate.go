package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/meshlens/meshlens/internal/topology"
)

// Remediation: when an incident blames an element of a kind with enough
// confidence, run an action ("drain this link"), and the matching undo once
// the element has been healthy for a hold-down time. Safety first:
//
//   - dry-run unless Execute is set: decisions are made and audited, nothing
//     is run;
//   - at most MaxActionsPerHour drains per rolling hour;
//   - never more than MaxLayerShare of a layer drained at once (e.g. ≤ 25%
//     of a DC's spines, of a pod's leaf-spine links);
//   - no action on evidence older than MaxEvidenceAge (two windows);
//   - every decision, taken or refused and why, goes to the audit log.

// Remediation actions.
const (
	ActionDrain   = "drain"
	ActionUndrain = "undrain"
)

// Action drains and undrains elements. Implementations must be safe for
// use from one goroutine at a time (the Remediator serializes calls).
type Action interface {
	Run(ctx context.Context, action, element, kind string) error
}

// RemediationRule says which culprits get an action.
type RemediationRule struct {
	Name string
	// Kinds the rule applies to: link, device, host.
	Kinds []string
	// MinConfidence of the localizer's verdict.
	MinConfidence float64
	// HoldDown is how long the element must be healthy (no open incident
	// blaming it) before it is undrained.
	HoldDown time.Duration
	Action   Action
}

// Decision is one remediation decision, as the audit log records it.
type Decision struct {
	At       time.Time `json:"at"`
	Rule     string    `json:"rule"`
	Incident string    `json:"incident,omitempty"`
	Element  string    `json:"element"`
	Kind     string    `json:"kind"`
	Action   string    `json:"action"`
	// Taken: the action ran (and succeeded). DryRun: it would have.
	Taken  bool   `json:"taken"`
	DryRun bool   `json:"dry_run"`
	Reason string `json:"reason"`
}

// LayerFunc names the layer an element belongs to for the share cap (e.g.
// "dc1/spine") and how many elements that layer has.
type LayerFunc func(element, kind string) (layer string, size int)

// RemediatorConfig configures a Remediator.
type RemediatorConfig struct {
	Rules []RemediationRule
	// Execute runs actions; false (the default) is dry-run.
	Execute           bool
	MaxActionsPerHour int
	MaxLayerShare     float64
	// MaxEvidenceAge: no action on evidence older than this, counted from
	// EvidenceDelay after the end of the window it comes from.
	MaxEvidenceAge time.Duration
	// EvidenceDelay is how long after its window ends evidence reaches the
	// remediator at the earliest (the aggregator's lateness and more).
	EvidenceDelay time.Duration
	Layers        LayerFunc
	// Audit receives every decision as a JSON line (nil: memory only).
	Audit io.Writer
	// AuditSize is how many decisions Decisions keeps.
	AuditSize int
	// Manager, when set, gets mitigations on incident timelines.
	Manager *Manager
}

// Defaults of RemediatorConfig.
const (
	DefaultMaxActionsPerHour = 3
	DefaultMaxLayerShare     = 0.25
	DefaultMaxEvidenceAge    = 20 * time.Second
	DefaultAuditSize         = 1000
)

// Remediator decides and runs remediation. Consider and Decisions are safe
// for concurrent use (calls are serialized).
type Remediator struct {
	cfg RemediatorConfig

	mu       sync.Mutex
	drained  map[string]*drainState
	actions  []time.Time // drains taken (or dry-run) in the last hour
	last     map[string]string
	audit    []Decision
	auditErr error
}

type drainState struct {
	rule         *RemediationRule
	kind, layer  string
	healthySince time.Time
	dryRun       bool
}

// NewRemediator checks cfg.
func NewRemediator(cfg RemediatorConfig) (*Remediator, error) {
	if err := cfg.checkPolicy(); err != nil {
		return nil, err
	}
	if cfg.AuditSize <= 0 {
		cfg.AuditSize = DefaultAuditSize
	}
	if cfg.Layers == nil {
		return nil, errors.New("alert: remediator: nil Layers (the layer-share cap needs them)")
	}
	return &Remediator{cfg: cfg, drained: map[string]*drainState{}, last: map[string]string{}}, nil
}

// SetPolicy replaces the rules, Execute and the caps (MaxActionsPerHour,
// MaxLayerShare, MaxEvidenceAge) with p's, from the next Consider on; the
// rest of the configuration stays. What is drained stays drained and is
// undone by the rule that drained it; the actions of the last hour still
// count against the new cap.
func (r *Remediator) SetPolicy(p RemediatorConfig) error {
	if err := p.checkPolicy(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfg.Rules, r.cfg.Execute = p.Rules, p.Execute
	r.cfg.MaxActionsPerHour, r.cfg.MaxLayerShare, r.cfg.MaxEvidenceAge = p.MaxActionsPerHour, p.MaxLayerShare, p.MaxEvidenceAge
	return nil
}

// checkPolicy fills the caps' defaults and checks the rules.
func (cfg *RemediatorConfig) checkPolicy() error {
	if cfg.MaxActionsPerHour <= 0 {
		cfg.MaxActionsPerHour = DefaultMaxActionsPerHour
	}
	if cfg.MaxLayerShare <= 0 {
		cfg.MaxLayerShare = DefaultMaxLayerShare
	}
	if cfg.MaxEvidenceAge <= 0 {
		cfg.MaxEvidenceAge = DefaultMaxEvidenceAge
	}
	for i, r := range cfg.Rules {
		if r.Name == "" || len(r.Kinds) == 0 || r.Action == nil {
			return fmt.Errorf("alert: remediation rule %d (%q): name, kinds and action are required", i, r.Name)
		}
		if r.MinConfidence < 0 || r.MinConfidence > 1 {
			return fmt.Errorf("alert: remediation rule %q: min confidence %v not in [0, 1]", r.Name, r.MinConfidence)
		}
	}
	return nil
}

// Policy returns the rules and caps in force.
func (r *Remediator) Policy() RemediatorConfig {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RemediatorConfig{Rules: append([]RemediationRule(nil), r.cfg.Rules...), Execute: r.cfg.Execute,
		MaxActionsPerHour: r.cfg.MaxActionsPerHour, MaxLayerShare: r.cfg.MaxLayerShare, MaxEvidenceAge: r.cfg.MaxEvidenceAge}
}

func (r *Remediator) rule(kind string, confidence float64) *RemediationRule {
	for i := range r.cfg.Rules {
		rl := &r.cfg.Rules[i]
		for _, k := range rl.Kinds {
			if k == kind && confidence >= rl.MinConfidence {
				return rl
			}
		}
	}
	return nil
}

// Consider runs one round at time at over the current incidents: drains
// what open incidents blame (within the safety limits) and undrains what has
// been healthy for its hold-down. It returns the round's new decisions.
func (r *Remediator) Consider(ctx context.Context, at time.Time, incidents []Incident) []Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Decision
	decide := func(d Decision) {
		// A refusal repeated every round is audited once, until it changes.
		key := d.Element + "/" + d.Action
		sig := fmt.Sprint(d.Taken, d.DryRun, d.Reason)
		if r.last[key] == sig && !d.Taken {
			return
		}
		r.last[key] = sig
		out = append(out, d)
		r.record(d)
	}
	blamed := map[string]bool{}
	hour := at.Add(-time.Hour)
	keep := r.actions[:0]
	for _, t := range r.actions {
		if t.After(hour) {
			keep = append(keep, t)
		}
	}
	r.actions = keep

	for _, inc := range incidents {
		c := inc.Blamed
		if inc.State != IncidentOpen || c == nil {
			continue
		}
		blamed[c.Element] = true
		if ds, ok := r.drained[c.Element]; ok {
			ds.healthySince = time.Time{}
			continue
		}
		rl := r.rule(c.Kind, c.Confidence)
		if rl == nil {
			continue
		}
		d := Decision{At: at, Rule: rl.Name, Incident: inc.ID, Element: c.Element, Kind: c.Kind, Action: ActionDrain, DryRun: !r.cfg.Execute}
		layer, size := r.cfg.Layers(c.Element, c.Kind)
		inLayer := 0
		for _, ds := range r.drained {
			if ds.layer == layer {
				inLayer++
			}
		}
		switch {
		case c.At.IsZero() || at.Sub(c.At)-r.cfg.EvidenceDelay > r.cfg.MaxEvidenceAge:
			d.Reason = fmt.Sprintf("refused: evidence from the window ending %s is older than %s (beyond the pipeline's %s delay)",
				c.At.UTC().Format(time.RFC3339), r.cfg.MaxEvidenceAge, r.cfg.EvidenceDelay)
		case len(r.actions) >= r.cfg.MaxActionsPerHour:
			d.Reason = fmt.Sprintf("refused: %d actions in the last hour, the limit is %d", len(r.actions), r.cfg.MaxActionsPerHour)
		case size <= 0 || float64(inLayer+1)/float64(size) > r.cfg.MaxLayerShare:
			d.Reason = fmt.Sprintf("refused: draining it would take %d of %d in layer %s out, above the %.0f%% cap", inLayer+1, size, layer, r.cfg.MaxLayerShare*100)
		case !r.cfg.Execute:
			d.Reason = fmt.Sprintf("dry-run: would %s %s %s (confidence %.2f, estimate %.3g)", ActionDrain, c.Kind, c.Element, c.Confidence, c.Estimate)
			r.drained[c.Element] = &drainState{rule: rl, kind: c.Kind, layer: layer, dryRun: true}
			r.actions = append(r.actions, at)
		default:
			if err := rl.Action.Run(ctx, ActionDrain, c.Element, c.Kind); err != nil {
				d.Reason = fmt.Sprintf("failed: %v", err)
				break
			}
			d.Taken = true
			d.Reason = fmt.Sprintf("drained %s %s (confidence %.2f, estimate %.3g)", c.Kind, c.Element, c.Confidence, c.Estimate)
			r.drained[c.Element] = &drainState{rule: rl, kind: c.Kind, layer: layer}
			r.actions = append(r.actions, at)
		}
		decide(d)
		if r.cfg.Manager != nil && (d.Taken || (d.DryRun && strings.HasPrefix(d.Reason, "dry-run"))) {
			_ = r.cfg.Manager.Mitigate(inc.ID, at, d.Reason) // the incident may have been dropped meanwhile
		}
	}
	for el, ds := range r.drained {
		if blamed[el] {
			continue
		}
		if ds.healthySince.IsZero() {
			ds.healthySince = at
		}
		if at.Sub(ds.healthySince) < ds.rule.HoldDown {
			continue
		}
		d := Decision{At: at, Rule: ds.rule.Name, Element: el, Kind: ds.kind, Action: ActionUndrain, DryRun: ds.dryRun}
		if ds.dryRun {
			d.Reason = fmt.Sprintf("dry-run: would undrain %s, healthy since %s", el, ds.healthySince.UTC().Format(time.RFC3339))
			delete(r.drained, el)
		} else if err := ds.rule.Action.Run(ctx, ActionUndrain, el, ds.kind); err != nil {
			d.Reason = fmt.Sprintf("failed: %v (retried next round)", err)
		} else {
			d.Taken = true
			d.Reason = fmt.Sprintf("undrained %s, healthy since %s", el, ds.healthySince.UTC().Format(time.RFC3339))
			delete(r.drained, el)
		}
		decide(d)
	}
	return out
}

func (r *Remediator) record(d Decision) {
	r.audit = append(r.audit, d)
	if len(r.audit) > r.cfg.AuditSize {
		r.audit = r.audit[len(r.audit)-r.cfg.AuditSize:]
	}
	if r.cfg.Audit != nil {
		b, err := json.Marshal(d)
		if err == nil {
			_, err = r.cfg.Audit.Write(append(b, '\n'))
		}
		if err != nil {
			r.auditErr = fmt.Errorf("alert: remediation audit log: %w", err)
		}
	}
}

// Decisions returns the audited decisions, oldest first, and the last
// error writing the audit log.
func (r *Remediator) Decisions() ([]Decision, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Decision(nil), r.audit...), r.auditErr
}

// Drained lists the elements drained now (dry-run included).
func (r *Remediator) Drained() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.drained))
	for el := range r.drained {
		out = append(out, el)
	}
	return out
}

// WebhookAction posts {"action","element","kind"} as signed JSON.
type WebhookAction struct{ Hook *Webhook }

// String names the action without its secret.
func (w WebhookAction) String() string { return "webhook " + w.Hook.url }

// Run posts the action, with the webhook's retries.
func (w WebhookAction) Run(ctx context.Context, action, element, kind string) error {
	body, err := json.Marshal(map[string]string{"action": action, "element": element, "kind": kind})
	if err != nil {
		return err
	}
	return w.Hook.deliver(ctx, body)
}

// CommandAction runs a command with the action, element and kind as its
// last three arguments (never through a shell).
type CommandAction struct {
	Argv    []string
	Timeout time.Duration
}

// String names the action.
func (c CommandAction) String() string { return "command " + strings.Join(c.Argv, " ") }

// Run runs the command.
func (c CommandAction) Run(ctx context.Context, action, element, kind string) error {
	if len(c.Argv) == 0 {
		return errors.New("empty command")
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	args := append(append([]string(nil), c.Argv[1:]...), action, element, kind)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, c.Argv[0], args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", c.Argv[0], strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}

// TopologyLayers is the LayerFunc of a fabric: a switch's layer is its role
// in its DC (dc1/spine: all spines of dc1; dc1-pod2/leaf: a pod's leaves;
// a ToR's rack is its own layer of one); a link's is the links between the
// same two roles in the same pod or DC; a host's, its rack.
func TopologyLayers(t *topology.Topology) LayerFunc {
	switchLayer := func(s *topology.Switch) string {
		switch s.Role {
		case topology.RoleLeaf:
			return s.Pod + "/leaf"
		case topology.RoleToR:
			return s.Pod + "/tor"
		case topology.RoleSpine:
			return s.DC + "/spine"
		}
		return string(s.Role)
	}
	linkLayer := func(a, b string) string {
		sa, sb := t.Switch(a), t.Switch(b)
		if sa == nil && sb == nil {
			return ""
		}
		if sa == nil || (sb != nil && sb.Role.Layer() < sa.Role.Layer()) {
			sa, sb = sb, sa
			a, b = b, a
		}
		// sa is the lower switch (or the only one, with a host at b).
		where := sa.DC
		if sa.Role == topology.RoleToR || sa.Role == topology.RoleLeaf {
			where = sa.Pod
		}
		if sb == nil {
			return sa.Rack + "/host-links"
		}
		return where + "/" + string(sa.Role) + "-" + string(sb.Role)
	}
	sizes := map[string]int{}
	for _, s := range t.Switches {
		sizes[switchLayer(s)]++
	}
	for _, l := range t.Links {
		sizes["link:"+linkLayer(l.A, l.B)]++
	}
	return func(element, kind string) (string, int) {
		if s := t.Switch(element); s != nil {
			l := switchLayer(s)
			return l, sizes[l]
		}
		if h := t.Host(element); h != nil {
			return h.Rack + "/hosts", len(t.Rack(h.Rack).Hosts)
		}
		if a, b, _, err := topology.ParseLinkName(element); err == nil && t.HasLink(a, b) {
			l := "link:" + linkLayer(a, b)
			return l, sizes[l]
		}
		return "", 0
	}
}
