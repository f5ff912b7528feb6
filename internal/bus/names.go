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

// Partition is the fixed partition of an agent among n: a stable hash, so
// every process agrees without coordination.
func Partition(agent string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(agent))
	return int(h.Sum32() % uint32(n))
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
