package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"time"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/api"
	"github.com/meshlens/meshlens/internal/wire"
	"github.com/meshlens/meshlens/web"
)

// HTTPConfig is the API part of Config.
type HTTPConfig struct {
	// TokensFile lists bearer tokens with roles; empty means no tokens.
	TokensFile string
	// AnonymousRole is what a request without a token may do: "none",
	// "viewer", ... The embedded default on loopback lets viewers in.
	AnonymousRole string
	// AuditLogFile receives the audit log as JSON lines.
	AuditLogFile string
}

func (s *Server) buildAPI() (*api.Server, error) {
	cfg := api.Config{
		Addr:       s.cfg.HTTPAddr,
		UI:         web.Handler(),
		Logger:     s.logger,
		Version:    s.cfg.Version,
		Registerer: s.registry,
	}
	if s.cfg.HTTP.TokensFile != "" {
		tokens, err := api.LoadTokens(s.cfg.HTTP.TokensFile)
		if err != nil {
			return nil, err
		}
		cfg.Tokens = tokens
	}
	anon := s.cfg.HTTP.AnonymousRole
	if anon == "" {
		anon = "none"
		if len(cfg.Tokens) == 0 {
			// Without any token configured the API would refuse everyone:
			// the embedded default opens it read-only instead.
			anon = "viewer"
		}
	}
	role, err := api.ParseRole(anon)
	if err != nil {
		return nil, fmt.Errorf("server: anonymous role: %w", err)
	}
	cfg.AllowAnonymous = role
	if s.cfg.HTTP.AuditLogFile != "" {
		f, err := os.OpenFile(s.cfg.HTTP.AuditLogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, fmt.Errorf("server: audit log: %w", err)
		}
		cfg.AuditLog = f
	}
	src := api.Sources{
		Store:     s.store,
		Topology:  func() any { return s.Topology() },
		Pinglists: s.controller,
		Agents:    agentSource{s},
		Pairs:     pairSource{s},
		Suspects:  s.analyzer,
		Evidence:  s.analyzer,
		Rules:     s.alerting,
		Metadata:  tsdbMetadata,
		Ready: func() error {
			if !s.ready.Load() {
				return fmt.Errorf("starting")
			}
			if !s.nc.IsConnected() {
				return fmt.Errorf("not connected to NATS")
			}
			return nil
		},
		Registry: s.registry,
	}
	srv, err := api.New(cfg, src)
	if err != nil {
		return nil, err
	}
	s.alerting.register(srv)
	srv.Handle("GET /api/v1/diagnose/pair", api.RoleViewer, http.HandlerFunc(s.serveDiagnosePair))
	s.registerChanges(srv)
	return srv, nil
}

// agentSource merges what every partition's aggregator knows of agents
// with the topology, so hosts that never reported show up as missing.
type agentSource struct{ s *Server }

func (a agentSource) Agents() []api.AgentStatus {
	seen := a.s.agentStatuses()
	now := time.Now()
	var out []api.AgentStatus
	for _, h := range a.s.Topology().Hosts {
		st, ok := seen[h.Name]
		as := api.AgentStatus{Host: h.Name, State: aggregate.AgentMissing}
		if ok {
			as = api.AgentStatus{
				Host:                    h.Name,
				Version:                 st.Version,
				LastSeen:                st.LastSeen,
				PinglistVersion:         st.PinglistVersion,
				ProbesTotal:             st.Results,
				ResultsRejected:         st.RejectedResults,
				SchedulingLagP99Seconds: st.SchedulingLagP99.Seconds(),
				State:                   aggregate.AgentState(now.Sub(st.LastSeen), windowOf(a.s.cfg.Aggregate)),
			}
		}
		out = append(out, as)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out
}

// silentAgents are the hosts whose agents are stale or missing
// (aggregate.SilentAgents, the simulator's rule too): probes lost on their
// way to one are no evidence against the network (localize.Window.Silent).
func (a agentSource) silentAgents() map[string]bool {
	hosts := a.s.Topology().Hosts
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.Name
	}
	return aggregate.SilentAgents(names, a.s.agentStatuses(), time.Now(), windowOf(a.s.cfg.Aggregate))
}

// pairSource answers pair queries from the aggregators' recent windows.
type pairSource struct{ s *Server }

func (p pairSource) PairWindows(_ context.Context, q api.PairQuery) ([]api.PairWindow, error) {
	protos, until, err := pairSpan(q)
	if err != nil {
		return nil, err
	}
	var out []api.PairWindow
	for _, agg := range p.s.aggregators() {
		for _, pr := range protos {
			for _, w := range agg.PairWindows(q.Src, q.Dst, pr, q.Since, until) {
				out = append(out, apiPairWindow(w, pr))
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, nil
}

// apiPairWindow is one of the aggregator's pair windows as the JSON API
// serves it: a quantile the window does not have (no probe answered)
// stays nil, never 0.
func apiPairWindow(w aggregate.PairWindow, proto wire.Protocol) api.PairWindow {
	pw := api.PairWindow{Start: w.Start, End: w.End, Proto: proto.Name(), Sent: w.Sent, Lost: w.Lost, LossRatio: w.LossRatio}
	for _, qv := range w.LatencySeconds {
		v := qv.Value
		switch qv.Q {
		case 0.5:
			pw.P50 = &v
		case 0.9:
			pw.P90 = &v
		case 0.99:
			pw.P99 = &v
		case 0.999:
			pw.P999 = &v
		}
	}
	return pw
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
