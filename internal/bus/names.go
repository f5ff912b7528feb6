package bus

import (
	"fmt"
	"hash/fnv"
)

// Names on the bus. Agents' credentials are scoped to these subjects and
// keys, so they are part of the security model: change them with care.
const (
	// ResultsStream holds every agent batch, subjects meshlens.results.<partition>.<agent>.
	ResultsStream        = "RESULTS"
	ResultsSubjectPrefix = "meshlens.results"
	// PinglistBucket is the KV bucket of pinglists, one key per host name.
	PinglistBucket = "meshlens-pinglists"
	// EvidenceBucket holds evidence on demand (pinglist.Boost), one key
	// per host asked to probe some peers harder.
	EvidenceBucket = "meshlens-evidence"
	// FleetBucket holds fleet-wide settings agents read, e.g. the UDP probe key.
	FleetBucket = "meshlens-fleet"
	// ResponderKeyKey is the key in FleetBucket of the fleet's UDP probe HMAC key.
	ResponderKeyKey = "responder-key"
	// StateBucket holds server-side state (aggregator checkpoints, leases).
	StateBucket = "meshlens-state"
)

// ResultsSubject is where agent publishes its batches.
func ResultsSubject(partition int, agent string) string {
	return fmt.Sprintf("%s.%d.%s", ResultsSubjectPrefix, partition, agent)
}

// PartitionSubjects matches every agent of one partition.
func PartitionSubjects(partition int) string {
	return fmt.Sprintf("%s.%d.>", ResultsSubjectPrefix, partition)
}

// Partition is the stable hash of key among n partitions, so every
// process agrees without coordination. The key of an agent is its rack
// (see AgentPartition): do not call it with an agent's name directly,
// except to recognise the rule before racks (one hash per host name),
// which the aggregators still accept during an upgrade.
func Partition(key string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// AgentPartition is the results partition of agent among n: the one rule
// the controller's pinglists, the aggregators and the simulators share.
// Every agent of one rack shares its rack's partition, so that a rack
// pair's counters (keyed by the prober's rack) are written by exactly one
// partition; rack is "" for a host the topology does not place, whose
// partition is then the hash of its own name.
func AgentPartition(agent, rack string, n int) int {
	if rack == "" {
		return Partition(agent, n)
	}
	return Partition(rack, n)
}

// BatchMsgID is the Nats-Msg-Id of a batch: JetStream drops a second
// publish of the same id inside the stream's duplicate window.
func BatchMsgID(agent string, epoch, seq uint64) string {
	return fmt.Sprintf("%s:%d:%d", agent, epoch, seq)
}

// PathsSubject is where an agent publishes its path discoveries (core NATS,
// best effort); PathsSubjects matches every agent's.
func PathsSubject(agent string) string { return PathsSubjectPrefix + "." + agent }

// PathsSubjectPrefix prefixes every agent's path-discovery subject.
const (
	PathsSubjectPrefix = "meshlens.paths"
	PathsSubjects      = PathsSubjectPrefix + ".>"
)

// HelloSubject is where an agent asks, request-reply, whether its host is
// in the topology; a server answers with a Hello. HelloSubjects matches
// every agent's.
func HelloSubject(agent string) string { return HelloSubjectPrefix + "." + agent }

const (
	HelloSubjectPrefix = "meshlens.hello"
	HelloSubjects      = HelloSubjectPrefix + ".*"
)

// Hello is a server's answer to an agent's hello: whether its host is in
// the topology and, when it is not, the closest names that are.
type Hello struct {
	Known   bool     `json:"known"`
	Closest []string `json:"closest,omitempty"`
}

// AgentClockHeader carries the agent's clock (Unix ns) at the moment it
// publishes a batch. Compared with the time JetStream stored the message,
// it exposes an agent whose clock is off in either direction, even for a
// batch replayed from the spool long after it was sealed.
const AgentClockHeader = "Meshlens-Agent-Time"

// RollupsStream holds the sealed windows of partitioned aggregators (the
// --role aggregator processes), one subject per partition,
// meshlens.rollups.<partition>, for the analyzers to merge.
const (
	RollupsStream        = "ROLLUPS"
	RollupsSubjectPrefix = "meshlens.rollups"
)

// RollupSubject is where partition's sealed windows are published.
func RollupSubject(partition int) string {
	return fmt.Sprintf("%s.%d", RollupsSubjectPrefix, partition)
}

// PartitionLeaseKey is the StateBucket key of the lease that makes one
// aggregator the owner of partition.
func PartitionLeaseKey(partition int) string { return fmt.Sprintf("lease.partition.%d", partition) }

// AggregatorMemberKey is an aggregator's membership key in StateBucket,
// renewed while it runs: aggregators share the partitions among the live
// members.
func AggregatorMemberKey(id string) string { return "member.aggregator." + id }

// AggregatorMemberPrefix matches every aggregator's membership key.
const AggregatorMemberPrefix = "member.aggregator."

// Headers of a rollup message: the publishing aggregator and the revision
// of the partition lease it won (its term), which the analyzer checks.
const (
	RollupHolderHeader = "Meshlens-Lease-Holder"
	RollupTermHeader   = "Meshlens-Lease-Term"
	RollupWindowHeader = "Meshlens-Window-Start" // unix nanoseconds
)

// RollupMsgID is the Nats-Msg-Id of a partition's window.
func RollupMsgID(partition int, windowStartUnixNano int64) string {
	return fmt.Sprintf("p%d:%d", partition, windowStartUnixNano)
}
