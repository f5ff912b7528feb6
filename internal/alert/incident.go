package alert

import (
	"errors"
	"fmt"
	"maps"
	"sort"
	"time"

	"github.com/meshlens/meshlens/internal/slo"
)

// IncidentState is open or resolved.
type IncidentState string

// Incident states.
const (
	IncidentOpen     IncidentState = "open"
	IncidentResolved IncidentState = "resolved"
)

// Timeline event kinds.
const (
	EventFirstSymptom  = "first_symptom"
	EventDetection     = "detection"
	EventLocalization  = "localization"
	EventMitigation    = "mitigation"
	EventAlertFiring   = "alert_firing"
	EventAlertResolved = "alert_resolved"
	EventResolution    = "resolution"
	EventAcknowledged  = "acknowledged"
)

// Event is one line of an incident's timeline.
type Event struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	Detail string    `json:"detail"`
}

// SLOBurn is how much of an SLO's budget an incident cost.
type SLOBurn struct {
	SLO string `json:"slo"`
	// BudgetAtStart and BudgetNow are the error budget remaining (share of
	// the window's budget) when the incident opened and at the last
	// evaluation while it was open.
	BudgetAtStart *float64 `json:"budget_at_start"`
	BudgetNow     *float64 `json:"budget_now"`
	// Consumed is BudgetAtStart - BudgetNow.
	Consumed     float64 `json:"consumed"`
	PeakBurnRate float64 `json:"peak_burn_rate"`
}

// Incident is alerts that share a cause.
type Incident struct {
	ID       string        `json:"id"`
	Title    string        `json:"title"`
	State    IncidentState `json:"state"`
	Start    time.Time     `json:"start"`
	Detected time.Time     `json:"detected"`
	End      time.Time     `json:"end,omitzero"`
	// LastActive is the last time one of its alerts held.
	LastActive    time.Time           `json:"last_active"`
	Blamed        *Culprit            `json:"blamed,omitempty"`
	Scopes        []slo.Scope         `json:"scopes,omitempty"`
	Alerts        []map[string]string `json:"alerts"`
	SLOs          []SLOBurn           `json:"slos"`
	AffectedPairs []string            `json:"affected_pairs,omitempty"`
	Timeline      []Event             `json:"timeline"`
	// Acknowledged says an operator has taken the incident on.
	Acknowledged *Ack `json:"acknowledged,omitempty"`

	alertFPs []string
}

// Ack is an operator's acknowledgement of an incident.
type Ack struct {
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	Comment string    `json:"comment,omitempty"`
}

// MaxAckComment bounds an acknowledgement's comment, in bytes.
const MaxAckComment = 1000

// Errors of Acknowledge.
var (
	ErrNoIncident       = errors.New("no such incident")
	ErrAlreadyAcked     = errors.New("incident already acknowledged")
	ErrIncidentResolved = errors.New("incident already resolved")
)

func (inc *Incident) clone() Incident {
	c := *inc
	if inc.Acknowledged != nil {
		a := *inc.Acknowledged
		c.Acknowledged = &a
	}
	if inc.Blamed != nil {
		b := *inc.Blamed
		b.Pairs = append([]string(nil), inc.Blamed.Pairs...)
		c.Blamed = &b
	}
	c.Scopes = append([]slo.Scope(nil), inc.Scopes...)
	c.Alerts = make([]map[string]string, len(inc.Alerts))
	for i, l := range inc.Alerts {
		c.Alerts[i] = maps.Clone(l)
	}
	c.SLOs = append([]SLOBurn(nil), inc.SLOs...)
	c.AffectedPairs = append([]string(nil), inc.AffectedPairs...)
	c.Timeline = append([]Event(nil), inc.Timeline...)
	c.alertFPs = append([]string(nil), inc.alertFPs...)
	return c
}

func (inc *Incident) event(at time.Time, kind, format string, args ...any) {
	inc.Timeline = append(inc.Timeline, Event{At: at, Kind: kind, Detail: fmt.Sprintf(format, args...)})
	sort.SliceStable(inc.Timeline, func(i, j int) bool { return inc.Timeline[i].At.Before(inc.Timeline[j].At) })
}

func (inc *Incident) mitigated() bool {
	for _, e := range inc.Timeline {
		if e.Kind == EventMitigation {
			return true
		}
	}
	return false
}

func (inc *Incident) overlaps(a *Alert) bool {
	for i := range inc.Scopes {
		if scopesOverlap(&inc.Scopes[i], a.Scope) {
			return true
		}
	}
	return false
}

// hasSLO: the tiers of one SLO (and anything else about it) share a cause.
func (inc *Incident) hasSLO(name string) bool {
	if name == "" {
		return false
	}
	for _, b := range inc.SLOs {
		if b.SLO == name {
			return true
		}
	}
	return false
}

func (inc *Incident) has(fp string) bool {
	for _, f := range inc.alertFPs {
		if f == fp {
			return true
		}
	}
	return false
}

func (inc *Incident) sloBurn(name string) *SLOBurn {
	for i := range inc.SLOs {
		if inc.SLOs[i].SLO == name {
			return &inc.SLOs[i]
		}
	}
	inc.SLOs = append(inc.SLOs, SLOBurn{SLO: name})
	return &inc.SLOs[len(inc.SLOs)-1]
}

// noteBudget records an SLO's budget for an open incident that involves it.
func (inc *Incident) noteBudget(st slo.Status) {
	for i := range inc.SLOs {
		b := &inc.SLOs[i]
		if b.SLO != st.Name || st.BudgetRemaining == nil {
			continue
		}
		v := *st.BudgetRemaining
		if b.BudgetAtStart == nil {
			b.BudgetAtStart = &v
		}
		b.BudgetNow = &v
		b.Consumed = *b.BudgetAtStart - v
		for _, t := range st.Tiers {
			if t.LongBurn != nil && *t.LongBurn > b.PeakBurnRate {
				b.PeakBurnRate = *t.LongBurn
			}
		}
	}
}

func alertTitle(a *Alert) string {
	if s := a.Annotations["summary"]; s != "" {
		return s
	}
	return a.Labels["alertname"]
}

// fireLocked files a newly firing alert into an incident.
func (m *Manager) fireLocked(a *Alert, at time.Time) {
	culprit := a.culprit
	if culprit == nil && m.cfg.Blamer != nil {
		if c, ok := m.cfg.Blamer.Blame(a.Scope, at); ok {
			culprit = &c
		}
	}
	var inc *Incident
	for i := len(m.order) - 1; i >= 0 && inc == nil; i-- {
		cand := m.incidents[m.order[i]]
		if cand == nil || cand.State != IncidentOpen {
			continue
		}
		sameCulprit := culprit != nil && cand.Blamed != nil && cand.Blamed.Element == culprit.Element
		recent := !a.ActiveAt.Before(cand.LastActive.Add(-m.cfg.GroupWindow)) && !cand.Start.After(at.Add(m.cfg.GroupWindow))
		if sameCulprit || (recent && (cand.overlaps(a) || cand.hasSLO(a.SLO))) {
			inc = cand
		}
	}
	if inc == nil {
		m.seq++
		inc = &Incident{
			ID:         fmt.Sprintf("%s-%d", at.UTC().Format("20060102-1504"), m.seq),
			Title:      alertTitle(a),
			State:      IncidentOpen,
			Start:      a.SymptomAt,
			Detected:   at,
			LastActive: at,
		}
		m.incidents[inc.ID] = inc
		m.order = append(m.order, inc.ID)
		if a.SymptomAt.Before(a.ActiveAt) {
			inc.event(a.SymptomAt, EventFirstSymptom, "short window of %s began to burn", describeAlert(a))
		} else {
			inc.event(a.ActiveAt, EventFirstSymptom, "%s began to hold", describeAlert(a))
		}
		inc.event(at, EventDetection, "%s fired", describeAlert(a))
	} else {
		if a.SymptomAt.Before(inc.Start) {
			inc.Start = a.SymptomAt
		}
		inc.event(at, EventAlertFiring, "%s fired", describeAlert(a))
	}
	if !inc.has(a.Fingerprint) {
		inc.alertFPs = append(inc.alertFPs, a.Fingerprint)
		inc.Alerts = append(inc.Alerts, maps.Clone(a.Labels))
	}
	if a.Scope != nil && !inc.overlapsExact(a.Scope) {
		inc.Scopes = append(inc.Scopes, *a.Scope)
	}
	if a.SLO != "" {
		b := inc.sloBurn(a.SLO)
		if a.Value > b.PeakBurnRate {
			b.PeakBurnRate = a.Value
		}
	}
	a.IncidentID = inc.ID
	inc.LastActive = at
	if culprit != nil && inc.Blamed == nil {
		m.setCulpritLocked(inc, culprit, at)
	}
	if inc.Blamed != nil {
		a.Annotations["blamed_element"] = inc.Blamed.Element
	}
	m.markDirtyLocked(inc.ID)
}

func (inc *Incident) overlapsExact(s *slo.Scope) bool {
	for _, x := range inc.Scopes {
		if x == *s {
			return true
		}
	}
	return false
}

func describeAlert(a *Alert) string {
	d := a.Labels["alertname"]
	if s := a.Labels["slo"]; s != "" {
		d += " slo=" + s
	}
	if t := a.Labels["tier"]; t != "" {
		d += " tier=" + t
	}
	if a.Scope != nil {
		d += " (" + describeScope(a.Scope) + ")"
	}
	return d
}

func (m *Manager) setCulpritLocked(inc *Incident, c *Culprit, at time.Time) {
	cp := *c
	cp.Pairs = append([]string(nil), c.Pairs...)
	inc.Blamed = &cp
	inc.AffectedPairs = append([]string(nil), c.Pairs...)
	inc.event(at, EventLocalization, "blamed %s %s (%s, estimate %.4g, confidence %.2f)%s",
		c.Kind, c.Element, c.Symptom, c.Estimate, c.Confidence, evidenceSuffix(c.Evidence))
	for _, fp := range inc.alertFPs {
		if a, ok := m.alerts[fp]; ok && a.State != StateResolved {
			a.Annotations["blamed_element"] = c.Element
		}
	}
	m.markDirtyLocked(inc.ID)
}

func evidenceSuffix(e string) string {
	if e == "" {
		return ""
	}
	return ": " + e
}

// blameLocked asks the Blamer about open incidents that have no culprit
// yet (the localizer often concludes a window or two after detection),
// and about those whose culprit the localizer has stopped naming: its
// first verdict on a fault is the least informed, so an incident follows
// it to a better one rather than keeping the first. A culprit still named
// now and then stays; a Blamer that cannot tell (no Fresh) keeps it. So
// does a mitigated incident (a drained culprit stops losing probes
// because the drain worked), and the culprit gives way only to an element
// it does not contain (a link is not revised to one of its directions).
func (m *Manager) blameLocked(at time.Time) {
	if m.cfg.Blamer == nil {
		return
	}
	fresh, canRevise := m.cfg.Blamer.(interface {
		Fresh(element string, at time.Time) bool
	})
	for _, id := range m.order {
		inc := m.incidents[id]
		if inc == nil || inc.State != IncidentOpen {
			continue
		}
		if inc.Blamed != nil && (!canRevise || inc.mitigated() || fresh.Fresh(inc.Blamed.Element, at)) {
			continue
		}
		scopes := inc.Scopes
		var found *Culprit
		if len(scopes) == 0 {
			if c, ok := m.cfg.Blamer.Blame(nil, at); ok {
				found = &c
			}
		}
		for i := range scopes {
			if c, ok := m.cfg.Blamer.Blame(&scopes[i], at); ok {
				found = &c
				break
			}
		}
		if found == nil || (inc.Blamed != nil && contains(inc.Blamed.Element, found.Element)) {
			continue
		}
		if inc.Blamed != nil {
			inc.event(at, EventLocalization, "the localizer no longer names %s", inc.Blamed.Element)
		}
		m.setCulpritLocked(inc, found, at)
	}
}

// resolveLocked notes a resolved alert and resolves its incident when it
// was the last one firing.
func (m *Manager) resolveLocked(a *Alert, at time.Time) {
	inc := m.incidents[a.IncidentID]
	if inc == nil {
		return
	}
	inc.LastActive = at
	inc.event(at, EventAlertResolved, "%s resolved", describeAlert(a))
	open := false
	for _, fp := range inc.alertFPs {
		if x, ok := m.alerts[fp]; ok && x.State == StateFiring {
			open = true
		}
	}
	if !open {
		inc.State, inc.End = IncidentResolved, at
		inc.event(at, EventResolution, "all alerts resolved after %s", at.Sub(inc.Start).Round(time.Second))
	}
	m.markDirtyLocked(inc.ID)
}

// Mitigate records a mitigation (e.g. a drained link) on an incident's
// timeline.
func (m *Manager) Mitigate(id string, at time.Time, detail string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	inc := m.incidents[id]
	if inc == nil {
		return fmt.Errorf("alert: mitigate: no incident %q", id)
	}
	inc.event(at, EventMitigation, "%s", detail)
	m.markDirtyLocked(id)
	return nil
}

// Acknowledge records that by has taken incident id on, with an optional
// comment, on the incident and its timeline. An incident is acknowledged
// once, and only while open.
func (m *Manager) Acknowledge(id, by, comment string, at time.Time) (Incident, error) {
	if len(comment) > MaxAckComment {
		return Incident{}, fmt.Errorf("alert: acknowledge %s: comment of %d bytes, at most %d", id, len(comment), MaxAckComment)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	inc := m.incidents[id]
	switch {
	case inc == nil:
		return Incident{}, fmt.Errorf("alert: acknowledge %q: %w", id, ErrNoIncident)
	case inc.Acknowledged != nil:
		return Incident{}, fmt.Errorf("alert: acknowledge %s: %w by %s at %s", id, ErrAlreadyAcked, inc.Acknowledged.By, inc.Acknowledged.At.UTC().Format(time.RFC3339))
	case inc.State == IncidentResolved:
		return Incident{}, fmt.Errorf("alert: acknowledge %s: %w", id, ErrIncidentResolved)
	}
	inc.Acknowledged = &Ack{By: by, At: at, Comment: comment}
	if comment != "" {
		inc.event(at, EventAcknowledged, "acknowledged by %s: %s", by, comment)
	} else {
		inc.event(at, EventAcknowledged, "acknowledged by %s", by)
	}
	m.markDirtyLocked(id)
	return inc.clone(), nil
}

// gcLocked drops resolved incidents past retention and the oldest resolved
// ones beyond MaxIncidents.
func (m *Manager) gcLocked(at time.Time) {
	keep := m.order[:0]
	excess := len(m.order) - m.cfg.MaxIncidents
	for _, id := range m.order {
		inc := m.incidents[id]
		if inc.State == IncidentResolved && (at.Sub(inc.End) > m.cfg.Retention || excess > 0) {
			delete(m.incidents, id)
			excess--
			for _, d := range m.dirty {
				delete(d, id)
			}
			continue
		}
		keep = append(keep, id)
	}
	m.order = keep
}

// Incidents returns the retained incidents, the most recent first.
func (m *Manager) Incidents() []Incident {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Incident, 0, len(m.order))
	for i := len(m.order) - 1; i >= 0; i-- {
		out = append(out, m.incidents[m.order[i]].clone())
	}
	return out
}

// Incident returns one incident by id.
func (m *Manager) Incident(id string) (Incident, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	inc, ok := m.incidents[id]
	if !ok {
		return Incident{}, false
	}
	return inc.clone(), true
}
