package server

import (
	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/prometheus/client_golang/prometheus"
)

// agentsCollector exports the agents' liveness as the agents page shows
// it, from their own deliveries (every agent seals a batch after each
// window boundary, results or not): meshlens_agents{state} counts the
// topology's hosts by state, meshlens_agent_up{host} is 1 for an agent up.
// Computed at scrape time, so the series follow the topology.
type agentsCollector struct {
	src        agentSource
	agents, up *prometheus.Desc
}

func newAgentsCollector(s *Server) *agentsCollector {
	return &agentsCollector{
		src:    agentSource{s},
		agents: prometheus.NewDesc("meshlens_agents", "Agents of the topology by state: up, stale (silent for three windows, at least 30 s), missing (silent for five minutes, or never heard).", []string{"state"}, nil),
		up:     prometheus.NewDesc("meshlens_agent_up", "1 while the host's agent delivers, 0 when it is stale or missing.", []string{"host"}, nil),
	}
}

func (c *agentsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.agents; ch <- c.up }

func (c *agentsCollector) Collect(ch chan<- prometheus.Metric) {
	if c.src.s.Topology() == nil {
		return
	}
	counts := map[string]int{aggregate.AgentUp: 0, aggregate.AgentStale: 0, aggregate.AgentMissing: 0}
	for _, a := range c.src.Agents() {
		counts[a.State]++
		up := 0.0
		if a.State == aggregate.AgentUp {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, a.Host)
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.agents, prometheus.GaugeValue, float64(n), state)
	}
}
