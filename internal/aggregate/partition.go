package aggregate

import "github.com/meshlens/meshlens/internal/bus"

// agentRack is agent's rack as the Locator places it: "" without a
// Locator or for a host it does not know, whose partition is then the
// hash of its own name (bus.AgentPartition).
func (a *Aggregator) agentRack(agent string) string {
	loc, ok := a.locateLocked(agent) // reads only the immutable config
	if !ok {
		return ""
	}
	return loc.rack
}

// agentPartitions are the partitions among n on which agent's batches are
// accepted: its rack's (bus.AgentPartition, the rule of the pinglists),
// and the one of the rule before racks, the hash of the agent's own name
// (bus.Partition), which agents still use during a rolling upgrade. Both
// are the same for a host the Locator does not place.
func (a *Aggregator) agentPartitions(agent string, n int) (rack, legacy int) {
	return bus.AgentPartition(agent, a.agentRack(agent), n), bus.Partition(agent, n)
}
