package diagnose

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/meshlens/meshlens/internal/topology"
)

// PairWindow is one aggregation window of a pair, as GET /api/v1/pairs
// returns it. Latencies in seconds.
type PairWindow struct {
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Proto     string    `json:"proto"`
	Sent      uint64    `json:"sent"`
	Lost      uint64    `json:"lost"`
	LossRatio float64   `json:"loss_ratio"`
	P50       float64   `json:"p50_seconds"`
	P90       float64   `json:"p90_seconds"`
	P99       float64   `json:"p99_seconds"`
	P999      float64   `json:"p999_seconds"`
}

// Suspect is one element the localizer blames (GET /api/v1/suspects).
type Suspect struct {
	Element    string  `json:"element"`
	Kind       string  `json:"kind"`
	Symptom    string  `json:"symptom"`
	Estimate   float64 `json:"estimate"`
	Confidence float64 `json:"confidence"`
	Evidence   struct {
		Probes    float64 `json:"probes"`
		Anomalous int     `json:"anomalous"`
		Pairs     int     `json:"pairs"`
		Expected  float64 `json:"expected"`
	} `json:"evidence"`
}

// AgentStatus is one agent as GET /api/v1/agents returns it.
type AgentStatus struct {
	Host                    string    `json:"host"`
	Version                 string    `json:"version"`
	LastSeen                time.Time `json:"last_seen"`
	ProbesTotal             uint64    `json:"probes_total"`
	SchedulingLagP99Seconds float64   `json:"scheduling_lag_p99_seconds"`
	State                   string    `json:"state"`
}

// Topology fetches the fabric model and rebuilds it (validated, with its
// ECMP paths) from the API's JSON.
func (c *Client) Topology(ctx context.Context) (*topology.Topology, error) {
	var raw topology.Topology
	if err := c.Get(ctx, "/api/v1/topology", nil, &raw); err != nil {
		return nil, err
	}
	y, err := raw.MarshalYAML()
	if err != nil {
		return nil, fmt.Errorf("diagnose: topology from the server: %w", err)
	}
	t, err := topology.Parse("<server topology>", y)
	if err != nil {
		return nil, fmt.Errorf("diagnose: topology from the server: %w", err)
	}
	return t, nil
}

// PairDetail is what the server holds of a pair (the "pair_detail" of
// GET /api/v1/pairs): every window ("full"), what its memory budget kept
// ("budget": complete only from CompleteFrom), or nothing ("off").
type PairDetail struct {
	Mode         string     `json:"mode"`
	CompleteFrom *time.Time `json:"complete_from,omitempty"`
	SampleOneIn  int        `json:"sample_one_in,omitempty"`
	Note         string     `json:"note"`
}

// Pair detail modes.
const (
	DetailFull   = "full"
	DetailBudget = "budget"
	DetailOff    = "off"
)

// Pairs fetches the windows of src→dst in [since, until] and what the
// server holds of the pair (nil from a server that does not say).
func (c *Client) Pairs(ctx context.Context, src, dst string, since, until time.Time) ([]PairWindow, *PairDetail, error) {
	var out []PairWindow
	var detail *PairDetail
	q := url.Values{"src": {src}, "dst": {dst}, "since": {since.UTC().Format(time.RFC3339)}, "until": {until.UTC().Format(time.RFC3339)}}
	if err := c.do(ctx, http.MethodGet, "/api/v1/pairs", q, nil, &out, map[string]any{"pair_detail": &detail}); err != nil {
		return nil, nil, err
	}
	return out, detail, nil
}

// Suspects fetches the localizer's latest suspects.
func (c *Client) Suspects(ctx context.Context) ([]Suspect, error) {
	var v struct {
		Suspects []Suspect `json:"suspects"`
	}
	if err := c.Get(ctx, "/api/v1/suspects", nil, &v); err != nil {
		return nil, err
	}
	return v.Suspects, nil
}

// Agents fetches the fleet's agents.
func (c *Client) Agents(ctx context.Context) ([]AgentStatus, error) {
	var out []AgentStatus
	if err := c.Get(ctx, "/api/v1/agents", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Scalar evaluates a PromQL expression returning at most one series at t
// through the Prometheus-compatible API; NaN when it returns nothing.
func (c *Client) Scalar(ctx context.Context, expr string, t time.Time) (float64, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	q := url.Values{"query": {expr}, "time": {strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)}}
	if err := c.Get(ctx, "/api/v1/query", q, &data); err != nil {
		return 0, err
	}
	parse := func(v [2]any) (float64, error) {
		s, _ := v[1].(string)
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, fmt.Errorf("diagnose: query %q: value %v: %w", expr, v[1], err)
		}
		return f, nil
	}
	switch data.ResultType {
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(data.Result, &v); err != nil {
			return 0, fmt.Errorf("diagnose: query %q: %w", expr, err)
		}
		return parse(v)
	case "vector":
		var vs []struct {
			Value [2]any `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &vs); err != nil {
			return 0, fmt.Errorf("diagnose: query %q: %w", expr, err)
		}
		switch len(vs) {
		case 0:
			return math.NaN(), nil
		case 1:
			return parse(vs[0].Value)
		}
		return 0, fmt.Errorf("diagnose: query %q: %d series, want one", expr, len(vs))
	}
	return 0, fmt.Errorf("diagnose: query %q: result type %q", expr, data.ResultType)
}
