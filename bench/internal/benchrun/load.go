package benchrun

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/sim"
	"github.com/meshlens/meshlens/internal/wire"
)

// WriteScenario writes a simulator scenario over the topology in topoFile
// (default probing: every 10 s, tcp and udp) with the given fault lines
// ("  - {kind: ...}"), the load `meshlens sim live` drives and Backlog
// encodes.
func WriteScenario(file, name, topoFile string, duration time.Duration, faults []string) error {
	text := fmt.Sprintf("name: %s\nseed: 1\ntopology: {file: %q}\nprobing: {interval: 10s, protocols: [tcp, udp]}\nduration: %s\n",
		name, topoFile, duration)
	if len(faults) > 0 {
		text += "faults:\n" + strings.Join(faults, "\n") + "\n"
	}
	return os.WriteFile(file, []byte(text), 0o644)
}

// Batch is one agent batch in the wire format, ready to publish to the
// results stream with its subject and Nats-Msg-Id.
type Batch struct {
	Subject, MsgID string
	Data           []byte
	Results        int
}

// BacklogConfig says what Backlog encodes.
type BacklogConfig struct {
	Scenario *sim.Scenario
	// Start is when the first round starts; rounds are the scenario's
	// interval apart.
	Start  time.Time
	Rounds int
	// BatchResults is how many results an agent puts in a batch (its
	// --batch-max-results); the last batch of each agent is shorter.
	BatchResults int
	Partitions   int
	// Epoch of every agent's batch ids: a new one per backlog, so that
	// the stream's de-duplication never mistakes one for another's.
	Epoch uint64
}

// Backlog is what the scenario's agents (the synthetic fabric of `sim
// live`, the same results and pinglists) would have published over
// cfg.Rounds rounds, cut into batches of cfg.BatchResults results as
// agents cut them: each batch marks its data complete up to the end of the
// last round whose results are all in it or earlier. The batches come
// round by round, in host order within one.
func Backlog(cfg BacklogConfig) ([]Batch, error) {
	sc := cfg.Scenario
	x, err := localize.NewIndex(sc.Topology)
	if err != nil {
		return nil, err
	}
	fab, err := sim.NewFabric(sc, x, cfg.Start)
	if err != nil {
		return nil, err
	}
	if cfg.Rounds > fab.Rounds() {
		return nil, fmt.Errorf("backlog: %d rounds, the scenario has %d", cfg.Rounds, fab.Rounds())
	}
	if cfg.BatchResults <= 0 || cfg.BatchResults > wire.MaxResultsPerBatch {
		return nil, fmt.Errorf("backlog: %d results a batch", cfg.BatchResults)
	}
	type queue struct {
		res   []*wire.ProbeResult
		round []int
		seq   uint64
	}
	queues := map[string]*queue{}
	var out []Batch
	// rackOf is a host's rack, the key of its partition, as its pinglist's.
	rackOf := func(host string) string {
		rack, _, _, _ := sc.Topology.Locate(host)
		return rack
	}
	// cut publishes q's first n results as one batch.
	cut := func(agent string, q *queue, n int) error {
		last := q.round[n-1]
		mark := fab.RoundStart(last + 1)
		if n < len(q.round) && q.round[n] == last {
			mark = fab.RoundStart(last) // part of that round is still to come
		}
		q.seq++
		b := &wire.Batch{Agent: agent, Epoch: cfg.Epoch, Seq: q.seq, CreatedUnixNano: mark.UnixNano(),
			CompleteBeforeUnixNano: mark.UnixNano(), AgentVersion: "bench", PinglistVersion: 1, Results: q.res[:n]}
		data, err := wire.Encode(b)
		if err != nil {
			return err
		}
		out = append(out, Batch{bus.ResultsSubject(bus.AgentPartition(agent, rackOf(agent), cfg.Partitions), agent), bus.BatchMsgID(agent, cfg.Epoch, q.seq), data, n})
		q.res, q.round = append(q.res[:0], q.res[n:]...), append(q.round[:0], q.round[n:]...)
		return nil
	}
	for r := range cfg.Rounds {
		err := fab.Step(r, func(b *wire.Batch) error {
			q := queues[b.Agent]
			if q == nil {
				q = &queue{}
				queues[b.Agent] = q
			}
			// The fabric reuses its results after emit: keep copies.
			for _, res := range b.Results {
				data, err := res.MarshalVT()
				if err != nil {
					return err
				}
				c := &wire.ProbeResult{}
				if err := c.UnmarshalVT(data); err != nil {
					return err
				}
				q.res = append(q.res, c)
				q.round = append(q.round, r)
			}
			for len(q.res) >= cfg.BatchResults {
				if err := cut(b.Agent, q, cfg.BatchResults); err != nil {
					return err
				}
			}
			if r == cfg.Rounds-1 && len(q.res) > 0 {
				return cut(b.Agent, q, len(q.res))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
