package aggregate

import "time"

// Agent liveness as the server's agent list and the analyzer read it, one
// rule for the server and the simulator: an agent seals a batch after
// every window boundary, results or not (and every few seconds while it
// probes), so three windows of silence, at least 30 s, make it stale, and
// five minutes missing. A host whose agent never delivered is missing.
const (
	AgentUp      = "up"
	AgentStale   = "stale"
	AgentMissing = "missing"

	AgentStaleMin     = 30 * time.Second
	AgentMissingAfter = 5 * time.Minute
)

// AgentStaleAfter is how long an agent may be silent, under windows of
// window, before it is stale.
func AgentStaleAfter(window time.Duration) time.Duration {
	return max(AgentStaleMin, 3*window)
}

// AgentState is the state of an agent last heard from silent ago, under
// windows of window: AgentUp, AgentStale or AgentMissing.
func AgentState(silent, window time.Duration) string {
	switch {
	case silent > AgentMissingAfter:
		return AgentMissing
	case silent > AgentStaleAfter(window):
		return AgentStale
	}
	return AgentUp
}

// SilentAgents are the hosts whose agents are stale or missing at now,
// seen being what the aggregators know of agents by name: probes lost on
// their way to one are no evidence against the network
// (localize.Window.Silent).
func SilentAgents(hosts []string, seen map[string]AgentStatus, now time.Time, window time.Duration) map[string]bool {
	out := map[string]bool{}
	for _, h := range hosts {
		st, ok := seen[h]
		if !ok || AgentState(now.Sub(st.LastSeen), window) != AgentUp {
			out[h] = true
		}
	}
	return out
}
