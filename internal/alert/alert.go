package alert

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/slo"
)

// State of an alert.
type State string

// Alert states.
const (
	StatePending  State = "pending"
	StateFiring   State = "firing"
	StateResolved State = "resolved"
)

// Condition is one alert condition that holds at an evaluation.
type Condition struct {
	// Labels identify the alert; alertname is required.
	Labels      map[string]string
	Annotations map[string]string
	// For is how long the condition must hold before the alert fires.
	For time.Duration
	// Scope of the probes concerned (nil when not about a location).
	Scope *slo.Scope
	// SLO is the objective the condition is about, if any.
	SLO string
	// Value is the measured quantity (e.g. the long-window burn rate).
	Value float64
	// SymptomSince, when known, is when the first sign of the problem
	// appeared, before the condition held (e.g. when the short window began
	// to burn, while the long one had not caught up yet).
	SymptomSince time.Time
	// Culprit, when the condition is itself about an element (the
	// localizer's own faults), is its incident's culprit: the Blamer is
	// not asked.
	Culprit *Culprit
	// GeneratorURL links the alert to where it is seen (default
	// Config.GeneratorURL).
	GeneratorURL string
}

// Alert is one alert, de-duplicated by its labels.
type Alert struct {
	Fingerprint string            `json:"fingerprint"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       State             `json:"state"`
	Scope       *slo.Scope        `json:"scope,omitempty"`
	SLO         string            `json:"slo,omitempty"`
	Value       float64           `json:"value"`
	// ActiveAt is when the condition began to hold; SymptomAt when the
	// first sign of it appeared (at or before ActiveAt).
	ActiveAt   time.Time `json:"active_at"`
	SymptomAt  time.Time `json:"symptom_at"`
	FiredAt    time.Time `json:"fired_at,omitzero"`
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	LastSeen   time.Time `json:"last_seen"`
	IncidentID string    `json:"incident_id,omitempty"`
	// GeneratorURL is where the alert is seen in meshlens's UI.
	GeneratorURL string `json:"generator_url,omitempty"`

	forDur time.Duration
	// source is who observes it (see ObserveSource); culprit its
	// condition's.
	source  string
	culprit *Culprit
}

// Fingerprint identifies a label set.
func Fingerprint(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := fnv.New64a()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(labels[k]))
		h.Write([]byte{0})
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// Receiver delivers notifications. Send is called from Run's goroutine only.
type Receiver interface {
	Name() string
	// Send delivers one group's alerts.
	Send(ctx context.Context, n Notification) error
	// Repeat says whether the receiver wants the firing alerts again every
	// ResendInterval (Alertmanager does, to keep them active).
	Repeat() bool
}

// Notification is one incident's alerts at a delivery.
type Notification struct {
	// GroupKey is the incident id.
	GroupKey string `json:"groupKey"`
	// Status is firing while any alert fires, else resolved.
	Status   string    `json:"status"`
	Alerts   []Alert   `json:"alerts"`
	Incident *Incident `json:"incident,omitempty"`
	At       time.Time `json:"at"`
	// EndsAt is when a firing alert should be considered over if meshlens
	// stops re-sending it.
	EndsAt time.Time `json:"-"`
}

// Defaults of Config.
const (
	DefaultResendInterval = time.Minute
	DefaultGroupWindow    = 5 * time.Minute
	DefaultRetention      = 24 * time.Hour
	DefaultMaxIncidents   = 1000
)

// Config of a Manager.
type Config struct {
	Receivers []Receiver
	// Blamer names culprits for incidents; nil blames nothing.
	Blamer Blamer
	// Clock drives Run; nil is the real clock.
	Clock clock.Clock
	// ResendInterval between repeats to receivers that want them.
	ResendInterval time.Duration
	// GroupWindow: alerts with overlapping scopes join an incident active
	// within this time.
	GroupWindow time.Duration
	// Retention of resolved alerts and incidents.
	Retention time.Duration
	// MaxIncidents kept (oldest resolved dropped first).
	MaxIncidents int
	// GeneratorURL is put on Alertmanager alerts (e.g. the UI's SLO page).
	GeneratorURL string
	Registerer   prometheus.Registerer
	Logger       *slog.Logger
}

// Manager runs the alert lifecycle and incidents. Observe, ObserveSLOs,
// Mitigate and the read methods are safe for concurrent use; Run delivers.
type Manager struct {
	cfg Config
	m   *metrics

	mu        sync.Mutex
	alerts    map[string]*Alert
	incidents map[string]*Incident
	order     []string // incident ids, oldest first
	seq       int
	dirty     map[string]map[string]bool // receiver -> incident id -> changed
	kick      chan struct{}
	// shortBurn is when each SLO tier's short window began to burn faster
	// than its factor (the first symptom, before the tier fires).
	shortBurn map[string]time.Time
}

type metrics struct {
	alerts        *prometheus.GaugeVec
	incidentsOpen prometheus.Gauge
	notifications *prometheus.CounterVec
	badConditions prometheus.Counter
}

// NewManager checks cfg and registers the manager's metrics.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.ResendInterval <= 0 {
		cfg.ResendInterval = DefaultResendInterval
	}
	if cfg.GroupWindow <= 0 {
		cfg.GroupWindow = DefaultGroupWindow
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.MaxIncidents <= 0 {
		cfg.MaxIncidents = DefaultMaxIncidents
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	names := map[string]bool{}
	for _, r := range cfg.Receivers {
		if names[r.Name()] {
			return nil, fmt.Errorf("alert: two receivers named %q", r.Name())
		}
		names[r.Name()] = true
	}
	m := &metrics{
		alerts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshlens_alerts", Help: "Alerts by state (pending, firing, resolved and still retained).",
		}, []string{"state"}),
		incidentsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_incidents_open", Help: "Incidents not yet resolved.",
		}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_alert_notifications_total", Help: "Notifications sent, by receiver and result (ok, error).",
		}, []string{"receiver", "result"}),
		badConditions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_alert_invalid_conditions_total", Help: "Conditions refused (no alertname).",
		}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{m.alerts, m.incidentsOpen, m.notifications, m.badConditions} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("alert: register metrics: %w", err)
			}
		}
	}
	mg := &Manager{
		cfg: cfg, m: m,
		alerts:    map[string]*Alert{},
		incidents: map[string]*Incident{},
		dirty:     map[string]map[string]bool{},
		kick:      make(chan struct{}, 1),
		shortBurn: map[string]time.Time{},
	}
	for _, r := range cfg.Receivers {
		mg.dirty[r.Name()] = map[string]bool{}
	}
	return mg, nil
}

// ObserveSLOs turns SLO statuses into conditions (one per firing tier) and
// observes them; it also feeds the budgets to open incidents. It has the
// signature of slo.Config.OnEvaluate.
func (m *Manager) ObserveSLOs(at time.Time, sts []slo.Status) {
	var conds []Condition
	m.mu.Lock()
	since := map[string]time.Time{}
	for _, st := range sts {
		for _, t := range st.Tiers {
			key := st.Name + "\x00" + t.Name
			if t.ShortBurn == nil || *t.ShortBurn <= t.Factor {
				delete(m.shortBurn, key)
				continue
			}
			if _, ok := m.shortBurn[key]; !ok {
				m.shortBurn[key] = at
			}
			since[key] = m.shortBurn[key]
		}
	}
	m.mu.Unlock()
	for _, st := range sts {
		for _, t := range st.Tiers {
			if !t.Firing {
				continue
			}
			name := slo.AlertName
			if t.Alert != "" {
				name = t.Alert // an imported SLO's, which its routes match
			}
			labels := map[string]string{"alertname": name, "slo": st.Name, "tier": t.Name, "severity": t.Severity}
			for _, more := range []map[string]string{t.Labels, st.Labels} {
				for k, v := range more {
					if _, set := labels[k]; !set {
						labels[k] = v
					}
				}
			}
			ann := map[string]string{
				"summary": fmt.Sprintf("SLO %s is burning its error budget faster than %sx over %s and %s",
					st.Name, strconv.FormatFloat(t.Factor, 'f', -1, 64), t.Long, t.Short),
			}
			if st.Runbook != "" {
				ann["runbook_url"] = st.Runbook
			}
			if st.Scope != nil {
				ann["scope"] = describeScope(st.Scope)
			}
			for k, v := range t.Annotations {
				ann[k] = v
			}
			var forDur time.Duration
			if t.For != "" {
				// Prometheus's syntax, as in the SLO file ("1d" included),
				// which internal/slo has validated.
				if d, err := model.ParseDuration(t.For); err == nil {
					forDur = time.Duration(d)
				}
			}
			var v float64
			if t.LongBurn != nil {
				v = *t.LongBurn
			}
			conds = append(conds, Condition{Labels: labels, Annotations: ann, For: forDur, Scope: st.Scope, SLO: st.Name, Value: v,
				SymptomSince: since[st.Name+"\x00"+t.Name]})
		}
	}
	m.Observe(at, conds)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, st := range sts {
		for _, inc := range m.incidents {
			// The evaluation that resolves an incident still counts.
			if inc.State == IncidentResolved && !inc.End.Equal(at) {
				continue
			}
			inc.noteBudget(st)
		}
	}
}

func describeScope(s *slo.Scope) string {
	var parts []string
	for _, kv := range [][2]string{{"dc", s.DC}, {"pod", s.Pod}, {"rack", s.Rack}, {"host", s.Host}, {"target", s.Target}, {"proto", s.Proto}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	if len(parts) == 0 {
		return "all probes"
	}
	return strings.Join(parts, " ")
}

// Observe runs one step of the lifecycle at time at: conds are every
// condition that holds now; alerts not among them end.
func (m *Manager) Observe(at time.Time, conds []Condition) { m.ObserveSource(at, "", conds) }

// ObserveSource is Observe for one source of conditions (the SLO engine
// is "", the localizer SourceLocalizer): only that source's alerts not
// among conds end, so sources observed at their own cadences do not end
// each other's alerts.
func (m *Manager) ObserveSource(at time.Time, source string, conds []Condition) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	for _, c := range conds {
		if c.Labels["alertname"] == "" {
			m.m.badConditions.Inc()
			m.cfg.Logger.Warn("alert condition without alertname refused", "labels", c.Labels)
			continue
		}
		fp := Fingerprint(c.Labels)
		if seen[fp] {
			continue // de-duplicated: the same alert reported twice
		}
		seen[fp] = true
		a, ok := m.alerts[fp]
		if !ok || a.State == StateResolved {
			a = &Alert{Fingerprint: fp, Labels: maps.Clone(c.Labels), State: StatePending, ActiveAt: at, SymptomAt: at, source: source}
			m.alerts[fp] = a
		}
		a.culprit, a.GeneratorURL = c.Culprit, c.GeneratorURL
		if a.GeneratorURL == "" {
			a.GeneratorURL = m.cfg.GeneratorURL
		}
		if !c.SymptomSince.IsZero() && c.SymptomSince.Before(a.SymptomAt) {
			a.SymptomAt = c.SymptomSince
		}
		a.Annotations = maps.Clone(c.Annotations)
		if a.Annotations == nil {
			a.Annotations = map[string]string{}
		}
		a.Scope, a.SLO, a.Value, a.LastSeen, a.forDur = c.Scope, c.SLO, c.Value, at, c.For
		switch {
		case a.State == StatePending && at.Sub(a.ActiveAt) >= a.forDur:
			a.State, a.FiredAt = StateFiring, at
			m.fireLocked(a, at)
		case a.State == StateFiring:
			if inc := m.incidents[a.IncidentID]; inc != nil {
				inc.LastActive = at
				if inc.Blamed != nil {
					a.Annotations["blamed_element"] = inc.Blamed.Element
				}
			}
		}
	}
	for fp, a := range m.alerts {
		if seen[fp] || (a.source != source && a.State != StateResolved) {
			continue
		}
		switch a.State {
		case StatePending:
			delete(m.alerts, fp)
		case StateFiring:
			a.State, a.ResolvedAt = StateResolved, at
			m.resolveLocked(a, at)
		case StateResolved:
			if at.Sub(a.ResolvedAt) > m.cfg.Retention {
				delete(m.alerts, fp)
			}
		}
	}
	m.blameLocked(at)
	m.gcLocked(at)
	m.updateGaugesLocked()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func (m *Manager) markDirtyLocked(id string) {
	for _, d := range m.dirty {
		d[id] = true
	}
}

func (m *Manager) updateGaugesLocked() {
	counts := map[State]int{}
	for _, a := range m.alerts {
		counts[a.State]++
	}
	for _, s := range []State{StatePending, StateFiring, StateResolved} {
		m.m.alerts.WithLabelValues(string(s)).Set(float64(counts[s]))
	}
	open := 0
	for _, inc := range m.incidents {
		if inc.State == IncidentOpen {
			open++
		}
	}
	m.m.incidentsOpen.Set(float64(open))
}

// Alerts returns every pending, firing and retained resolved alert, the
// most recent first.
func (m *Manager) Alerts() []Alert {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Alert, 0, len(m.alerts))
	for _, a := range m.alerts {
		out = append(out, a.clone())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].ActiveAt.Equal(out[j].ActiveAt) {
			return out[i].ActiveAt.After(out[j].ActiveAt)
		}
		return out[i].Fingerprint < out[j].Fingerprint
	})
	return out
}

func (a *Alert) clone() Alert {
	c := *a
	c.Labels = maps.Clone(a.Labels)
	c.Annotations = maps.Clone(a.Annotations)
	if a.Scope != nil {
		s := *a.Scope
		c.Scope = &s
	}
	return c
}

// Run delivers notifications until ctx ends: on every change and every
// ResendInterval. A round's failures are logged, counted and retried at the
// next round.
func (m *Manager) Run(ctx context.Context) error {
	t := m.cfg.Clock.NewTicker(m.cfg.ResendInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.kick:
			m.Deliver(ctx, false)
		case <-t.C():
			m.Deliver(ctx, true)
		}
	}
}

// Deliver runs one delivery round now: changed groups to every receiver,
// and with repeat, firing groups to receivers that want repeats. It
// returns the errors of the round (also logged and counted).
func (m *Manager) Deliver(ctx context.Context, repeat bool) error {
	now := m.cfg.Clock.Now()
	type job struct {
		r Receiver
		n Notification
	}
	var jobs []job
	m.mu.Lock()
	for _, r := range m.cfg.Receivers {
		d := m.dirty[r.Name()]
		for _, id := range m.order {
			inc := m.incidents[id]
			if inc == nil {
				continue
			}
			firing := inc.State == IncidentOpen
			if !d[id] && !(repeat && r.Repeat() && firing) {
				continue
			}
			n := Notification{GroupKey: id, Status: "resolved", At: now, EndsAt: now.Add(4 * m.cfg.ResendInterval)}
			if firing {
				n.Status = "firing"
			}
			for _, fp := range inc.alertFPs {
				if a, ok := m.alerts[fp]; ok && a.State != StatePending {
					n.Alerts = append(n.Alerts, a.clone())
				}
			}
			ic := inc.clone()
			n.Incident = &ic
			if len(n.Alerts) == 0 {
				delete(d, id)
				continue
			}
			jobs = append(jobs, job{r, n})
			delete(d, id) // re-marked below on failure
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, j := range jobs {
		if err := j.r.Send(ctx, j.n); err != nil {
			m.m.notifications.WithLabelValues(j.r.Name(), "error").Inc()
			m.cfg.Logger.Warn("alert delivery failed", "receiver", j.r.Name(), "incident", j.n.GroupKey, "err", err)
			errs = append(errs, fmt.Errorf("alert: deliver incident %s to %s: %w", j.n.GroupKey, j.r.Name(), err))
			m.mu.Lock()
			m.dirty[j.r.Name()][j.n.GroupKey] = true
			m.mu.Unlock()
			continue
		}
		m.m.notifications.WithLabelValues(j.r.Name(), "ok").Inc()
	}
	return errors.Join(errs...)
}
