package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/meshlens/meshlens/internal/alert"
	"github.com/meshlens/meshlens/internal/analyze"
	"github.com/meshlens/meshlens/internal/api"
	"github.com/meshlens/meshlens/internal/slo"
	"github.com/meshlens/meshlens/internal/store"
	"github.com/meshlens/meshlens/internal/yamlfile"
)

// AlertingConfig is the SLO and alerting part of Config.
type AlertingConfig struct {
	// SLOFiles are SLO definitions (meshlens YAML or OpenSLO).
	SLOFiles []string
	// File is the alerting file: Alertmanagers, webhooks, remediation.
	File string
	// EvaluateEvery is the SLO engine's cadence.
	EvaluateEvery time.Duration
	// Faults says when the localizer's verdicts raise incidents of their
	// own (its ElementURL and Registerer are set by the server).
	Faults alert.FaultConfig
	// ExternalURL is where users reach this server's UI (alerts link to
	// it); default http://HTTP-ADDR.
	ExternalURL string
}

// alerting is stage 2's second half: SLIs and burn rates from the store,
// alerts and incidents with the localizer's culprits, remediation.
type alerting struct {
	engine *slo.Engine // nil without SLOs
	mgr    *alert.Manager
	board  *alert.Board
	faults *alert.FaultWatch
	rem    *alert.Remediator
	// remAudit is the remediation decisions' log file in the data dir.
	remAudit *os.File
	// remSource says where the remediation policy in force came from:
	// "none", "alerting file" or "api".
	remSource string
	// defaultEvidenceAge is two of the server's windows.
	defaultEvidenceAge time.Duration
	ctx                context.Context
	// delivering: this process sends alerts and remediates (the one
	// process, or the analyzer holding the lease); others only evaluate.
	delivering atomic.Bool

	// For /api/v1/rules (rules.go): the settings the rules are evaluated
	// with, and when the SLOs and the localizer's verdicts last were.
	sloInterval, sloDataDelay, window time.Duration
	faultCfg                          alert.FaultConfig
	sloEval, faultEval                evalRecord
}

// RemediationPolicyFile is where, in the data dir, a remediation policy
// set through the admin API is kept; at start it takes precedence over the
// alerting file's remediation section (delete it to go back to that).
const RemediationPolicyFile = "remediation-policy.yaml"

// RemediationAuditFile is where, in the data dir, every remediation
// decision (taken, refused, dry-run, and why) is appended as a JSON line;
// /api/v1/remediations serves the most recent ones from memory.
const RemediationAuditFile = "remediation-audit.jsonl"

func (s *Server) buildAlerting() (*alerting, error) {
	a := &alerting{board: analyze.NewCulpritBoard(s.cfg.Aggregate), ctx: context.Background(),
		sloInterval: cmp.Or(max(s.cfg.Alerting.EvaluateEvery, 0), slo.DefaultInterval), sloDataDelay: analyze.EvidenceDelay(s.cfg.Aggregate),
		window: windowOf(s.cfg.Aggregate), faultCfg: faultDefaults(s.cfg.Alerting.Faults)}
	var fileCfg alert.FileConfig
	if s.cfg.Alerting.File != "" {
		c, err := alert.LoadConfig(s.cfg.Alerting.File)
		if err != nil {
			return nil, err
		}
		fileCfg = *c
	}
	external := strings.TrimRight(s.cfg.Alerting.ExternalURL, "/")
	if external == "" {
		external = "http://" + s.cfg.HTTPAddr
	} else if u, err := url.Parse(external); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server: external URL %q: want http(s)://HOST[:PORT][/PATH]", s.cfg.Alerting.ExternalURL)
	}
	mgr, err := alert.NewManager(alert.Config{
		Receivers: fileCfg.Receivers, Blamer: a.board,
		ResendInterval: fileCfg.ResendInterval, GroupWindow: fileCfg.GroupWindow,
		GeneratorURL: external + "/#/incidents",
		Registerer:   s.registry, Logger: s.logger,
	})
	if err != nil {
		return nil, err
	}
	a.mgr = mgr
	fc := s.cfg.Alerting.Faults
	fc.ElementURL, fc.Registerer = alert.UIElementURL(external), s.registry
	if a.faults, err = alert.NewFaultWatch(fc); err != nil {
		return nil, err
	}
	// Always a remediator, so that an admin can give it rules through the
	// API; with none it decides nothing.
	rc := fileCfg.Remediation
	a.remSource = "alerting file"
	if s.cfg.Alerting.File == "" {
		a.remSource = "none"
	}
	override := filepath.Join(s.cfg.DataDir, RemediationPolicyFile)
	if data, err := yamlfile.ReadFile(override, yamlfile.MaxConfigBytes); err == nil {
		p, err := alert.ParseRemediation(override, data, os.Getenv)
		if err != nil {
			return nil, fmt.Errorf("server: the remediation policy set through the API: %w", err)
		}
		rc.Rules, rc.Execute, rc.MaxActionsPerHour, rc.MaxLayerShare, rc.MaxEvidenceAge = p.Rules, p.Execute, p.MaxActionsPerHour, p.MaxLayerShare, p.MaxEvidenceAge
		a.remSource = "api"
		s.logger.Info("remediation policy from the admin API is in force, over the alerting file's", "file", override)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("server: remediation policy: %w", err)
	}
	rc.Layers = alert.TopologyLayers(s.Topology())
	rc.Manager = mgr
	// "No action while the evidence is older than two windows."
	rc.EvidenceDelay = analyze.EvidenceDelay(s.cfg.Aggregate)
	a.defaultEvidenceAge = 2 * windowOf(s.cfg.Aggregate)
	if rc.MaxEvidenceAge == 0 {
		rc.MaxEvidenceAge = a.defaultEvidenceAge
	}
	f, err := os.OpenFile(filepath.Join(s.cfg.DataDir, RemediationAuditFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, fmt.Errorf("server: remediation audit log: %w", err)
	}
	a.remAudit, rc.Audit = f, f
	if a.rem, err = alert.NewRemediator(rc); err != nil {
		f.Close()
		return nil, err
	}
	if len(s.cfg.Alerting.SLOFiles) > 0 {
		slos, err := slo.Load(s.cfg.Alerting.SLOFiles...)
		if err != nil {
			return nil, err
		}
		if s.cfg.Role == RoleAll {
			retention := s.cfg.Store.Retention
			if retention <= 0 {
				retention = store.DefaultRetention
			}
			warnRetention(s.logger, slos, retention)
		}
		a.engine, err = slo.NewEngine(slo.Config{
			SLOs: slos, Querier: s.store, Appendable: s.store,
			Interval: s.cfg.Alerting.EvaluateEvery, ConsumedDays: 7,
			// SLI windows end where the store's data is complete.
			DataDelay:  a.sloDataDelay,
			OnEvaluate: a.onEvaluate, Registerer: s.registry, Logger: s.logger,
		})
		if err != nil {
			return nil, err
		}
	}
	return a, nil
}

// onEvaluate runs after every SLO evaluation, on the engine's goroutine.
func (a *alerting) onEvaluate(at time.Time, statuses []slo.Status) {
	// The engine calls this when done: the time since at is what the
	// evaluation took.
	a.sloEval.set(at, time.Since(at))
	a.mgr.ObserveSLOs(at, statuses)
	if a.rem != nil && a.delivering.Load() {
		a.rem.Consider(a.ctx, at, a.mgr.Incidents())
	}
}

// Run evaluates SLOs and delivers alerts until ctx ends.
func (a *alerting) Run(ctx context.Context) error {
	a.ctx = ctx
	a.delivering.Store(true)
	if a.engine == nil {
		return a.mgr.Run(ctx)
	}
	errc := make(chan error, 2)
	go func() { errc <- a.engine.Run(ctx) }()
	go func() { errc <- a.mgr.Run(ctx) }()
	err := <-errc
	if err2 := <-errc; err == nil {
		err = err2
	}
	return err
}

// evaluate runs the SLO engine alone: every process sharing a bus
// evaluates the SLOs (over its TSDB or the shared one) and keeps their
// incidents for its API; only the one that holds the analyzer lease
// delivers them (deliver) and remediates.
func (a *alerting) evaluate(ctx context.Context) error {
	a.ctx = ctx
	if a.engine == nil {
		return nil
	}
	return a.engine.Run(ctx)
}

// deliver sends alerts (and lets remediation act) until ctx ends.
func (a *alerting) deliver(ctx context.Context) error {
	a.delivering.Store(true)
	defer a.delivering.Store(false)
	return a.mgr.Run(ctx)
}

// blame hands the localizer's verdict to the incidents' culprit board,
// and raises or ends the localizer's own alerts (an element blamed in
// consecutive windows opens an incident, SLOs or not).
func (a *alerting) blame(v analyze.Verdict) {
	culprits := analyze.Culprits(v)
	a.board.Update(culprits)
	now := time.Now()
	a.mgr.ObserveSource(now, alert.SourceLocalizer, a.faults.Observe(now, culprits))
	a.faultEval.set(now, time.Since(now))
}

func (a *alerting) register(srv *api.Server) {
	srv.Handle("GET /api/v1/slos", api.RoleViewer, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		statuses := []slo.Status{}
		if a.engine != nil {
			statuses = a.engine.Statuses()
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": statuses})
	}))
	srv.Handle("GET /api/v1/incidents", api.RoleViewer, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": a.mgr.Incidents()})
	}))
	srv.Handle("GET /api/v1/incidents/{id}", api.RoleViewer, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inc, ok := a.mgr.Incident(r.PathValue("id"))
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]any{"status": "error", "errorType": "not_found", "error": "no incident " + r.PathValue("id")})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": inc})
	}))
	srv.Handle("GET /api/v1/remediations", api.RoleViewer, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		decisions := []alert.Decision{}
		if a.rem != nil {
			var err error
			if decisions, err = a.rem.Decisions(); err != nil {
				writeJSON(w, http.StatusInternalServerError, map[string]any{"status": "error", "errorType": "internal", "error": err.Error()})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": decisions})
	}))
}

// warnRetention says which SLOs' windows are longer than what the embedded
// TSDB keeps: their budgets count only the retention's span (the oldest
// hourly copy kept stands for the window's start), which the status does
// not show.
func warnRetention(log *slog.Logger, slos []slo.SLO, retention time.Duration) {
	for _, x := range slos {
		if x.Window > retention {
			log.Warn("an SLO's window is longer than the TSDB keeps: its budget counts only the retention's span; raise --retention",
				"slo", x.Name, "window", x.Window, "retention", retention)
		}
	}
}
