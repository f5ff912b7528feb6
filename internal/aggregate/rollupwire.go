package aggregate

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	enc "github.com/DataDog/sketches-go/ddsketch/encoding"
	"github.com/DataDog/sketches-go/ddsketch/store"

	"github.com/meshlens/meshlens/internal/wire"
)

// A sealed window travels from each aggregator (one per partition) to the
// analyzer as a wire.WindowRollup: its host, rack-pair, pod-pair and
// DC-pair rollups, counters and RTTs as they are (exact RTTs or the
// sketch), so that merging the decoded parts (MergeWindows) gives what one
// aggregator seeing everything would have sealed; and of its pairs only
// what the analyzer reads, how often each was probed.
//
// Size, to bound the stream's messages: a window of a 64-host fabric (2
// pods × 4 racks × 8 hosts) probed full mesh, once over tcp and twice over
// udp, encodes to 139 KB (TestWindowRoundTrip logs it): 82 KB for its
// 8,192 pairs (10 bytes each), the rest for 128 host rollups (sketches),
// 128 rack-pair rollups (tcp exact RTTs, udp sketches), 8 pod-pair and
// 2 DC-pair rollups (sketches).

// EncodeWindow encodes partition's part of the sealed window w, and its
// agents as the aggregator knows them, for the analyzer. A window over wire's limits is refused with wire.ErrTooLarge
// (the caller decides what to drop), and one the analyzer would refuse with
// the error it would give, so that it fails here, at its source.
func EncodeWindow(partition int, w *SealedWindow, agents []AgentStatus) ([]byte, error) {
	if partition < 0 || uint64(partition) > math.MaxUint32 {
		return nil, fmt.Errorf("aggregate: window %s: partition %d: %w", w.Start.Format(time.RFC3339), partition, wire.ErrInvalidField)
	}
	m := &wire.WindowRollup{
		Version:       wire.RollupVersion,
		Partition:     uint32(partition),
		StartUnixNano: w.Start.UnixNano(),
		EndUnixNano:   w.End.UnixNano(),
		Hosts:         hostRollupsToWire(w.Hosts),
		RackPairs:     locationRollupsToWire(w.RackPairs),
		PodPairs:      locationRollupsToWire(w.PodPairs),
		DcPairs:       locationRollupsToWire(w.DCPairs),
	}
	m.PairNames, m.Pairs = pairsToWire(w.Pairs)
	m.Agents = agentsToWire(agents)
	if err := wire.ValidateWindowRollup(m); err != nil {
		return nil, fmt.Errorf("aggregate: window %s of partition %d: %w", w.Start.Format(time.RFC3339), partition, err)
	}
	data, err := m.MarshalVT()
	if err != nil {
		return nil, fmt.Errorf("aggregate: encode window %s of partition %d: %w", w.Start.Format(time.RFC3339), partition, err)
	}
	if len(data) > wire.MaxRollupBytes {
		return nil, fmt.Errorf("aggregate: window %s of partition %d is %d bytes: %w", w.Start.Format(time.RFC3339), partition, len(data), wire.ErrTooLarge)
	}
	return data, nil
}

// DecodeWindow decodes one partition's part of a sealed window and its
// agents, as EncodeWindow wrote them. The window reads like a sealed one,
// except that its pairs carry only Sent. Errors wrap wire's (wire.Reason
// labels them).
func DecodeWindow(data []byte) (partition int, w *SealedWindow, agents []AgentStatus, err error) {
	m, err := wire.DecodeWindowRollup(data)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("aggregate: decode window: %w", err)
	}
	w = &SealedWindow{
		Start: time.Unix(0, m.StartUnixNano).UTC(),
		End:   time.Unix(0, m.EndUnixNano).UTC(),
	}
	if err := rollupsFromWire(m, w); err != nil {
		return 0, nil, nil, fmt.Errorf("aggregate: decode window %s of partition %d: %w", w.Start.Format(time.RFC3339), m.Partition, err)
	}
	if agents, err = agentsFromWire(m.Agents); err != nil {
		return 0, nil, nil, fmt.Errorf("aggregate: decode window %s of partition %d: %w", w.Start.Format(time.RFC3339), m.Partition, err)
	}
	return int(m.Partition), w, agents, nil
}

func agentsToWire(agents []AgentStatus) []*wire.AgentState {
	out := make([]*wire.AgentState, 0, len(agents))
	for _, a := range agents {
		out = append(out, &wire.AgentState{Agent: a.Agent, LastSeenUnixNano: a.LastSeen.UnixNano(), Version: a.Version,
			PinglistVersion: a.PinglistVersion, Results: a.Results, RejectedResults: a.RejectedResults,
			SchedulingLagP99Ns: int64(a.SchedulingLagP99)})
	}
	return out
}

// agentsFromWire refuses an agent listed twice: which one would be true?
func agentsFromWire(agents []*wire.AgentState) ([]AgentStatus, error) {
	out := make([]AgentStatus, 0, len(agents))
	seen := make(map[string]bool, len(agents))
	for _, a := range agents {
		if seen[a.Agent] {
			return nil, fmt.Errorf("agent %q listed twice: %w", a.Agent, wire.ErrInvalidField)
		}
		seen[a.Agent] = true
		out = append(out, AgentStatus{Agent: a.Agent, LastSeen: time.Unix(0, a.LastSeenUnixNano).UTC(), Version: a.Version,
			PinglistVersion: a.PinglistVersion, Results: a.Results, RejectedResults: a.RejectedResults,
			SchedulingLagP99: time.Duration(a.SchedulingLagP99Ns)})
	}
	return out, nil
}

// rollupsFromWire fills w's pairs and its host, rack-pair, pod-pair and
// DC-pair rollups.
func rollupsFromWire(m *wire.WindowRollup, w *SealedWindow) (err error) {
	if w.Pairs, err = pairsFromWire(m.PairNames, m.Pairs); err != nil {
		return err
	}
	if w.Hosts, err = hostRollupsFromWire(m.Hosts); err != nil {
		return err
	}
	if w.RackPairs, err = locationRollupsFromWire("rack", m.RackPairs); err != nil {
		return err
	}
	if w.PodPairs, err = locationRollupsFromWire("pod", m.PodPairs); err != nil {
		return err
	}
	w.DCPairs, err = locationRollupsFromWire("dc", m.DcPairs)
	return err
}

var directionToWire = map[Direction]wire.Direction{Out: wire.Direction_DIRECTION_OUT, In: wire.Direction_DIRECTION_IN}

// hostRollupsToWire lists the host rollups in key order, so that a window
// always encodes to the same bytes.
func hostRollupsToWire(rollups map[HostKey]*Rollup) []*wire.HostRollup {
	out := make([]*wire.HostRollup, 0, len(rollups))
	for k, r := range rollups {
		out = append(out, &wire.HostRollup{Host: k.Host, Direction: directionToWire[k.Direction], Counts: rollupToWire(r)})
	}
	slices.SortFunc(out, func(a, b *wire.HostRollup) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Direction, b.Direction))
	})
	return out
}

// locationRollupsToWire lists rack-, pod- or DC-pair rollups in key order.
func locationRollupsToWire(rollups map[LocationPair]*Rollup) []*wire.LocationRollup {
	out := make([]*wire.LocationRollup, 0, len(rollups))
	for k, r := range rollups {
		out = append(out, &wire.LocationRollup{Src: k.Src, Dst: k.Dst, Protocol: k.Proto, Counts: rollupToWire(r)})
	}
	slices.SortFunc(out, func(a, b *wire.LocationRollup) int {
		return cmp.Or(cmp.Compare(a.Src, b.Src), cmp.Compare(a.Dst, b.Dst), cmp.Compare(a.Protocol, b.Protocol))
	})
	return out
}

func rollupToWire(r *Rollup) *wire.RollupCounts {
	c := &wire.RollupCounts{Sent: r.Sent, Lost: r.Lost, SynRetransmits: r.SynRetransmits}
	l := &r.rtt
	switch {
	case l.hasSketch():
		// Every sketch has sketchMapping: it need not travel.
		l.over.sketch.Encode(&c.RttSketch, true)
	case l.count > 0:
		c.RttNs = make([]uint32, l.count)
		for i := range l.count {
			c.RttNs[i] = l.exact(i)
		}
	}
	return c
}

// pairsToWire lists each pair's probe count, naming its ends by index into
// names, in which every name appears once.
func pairsToWire(pairs []PairEntry) (names []string, out []*wire.PairProbes) {
	index := make(map[string]uint32)
	nameIndex := func(name string) uint32 {
		i, ok := index[name]
		if !ok {
			i = uint32(len(names))
			index[name] = i
			names = append(names, name)
		}
		return i
	}
	out = make([]*wire.PairProbes, len(pairs))
	for i, p := range pairs {
		out[i] = &wire.PairProbes{Src: nameIndex(p.Key.Src), Dst: nameIndex(p.Key.Dst), Protocol: p.Key.Proto, Sent: p.Stats.Sent}
	}
	return names, out
}

// pairsFromWire gives each pair stats that hold only Sent, all in one
// allocation; wire.ValidateWindowRollup has checked the name indexes. A
// pair listed twice would be counted twice: with each name listed once,
// the indexes tell.
func pairsFromWire(names []string, pairs []*wire.PairProbes) ([]PairEntry, error) {
	seenName := make(map[string]bool, len(names))
	for _, name := range names {
		if seenName[name] {
			return nil, fmt.Errorf("pair name %q listed twice: %w", name, wire.ErrInvalidField)
		}
		seenName[name] = true
	}
	type pairIndex struct {
		src, dst uint32
		proto    wire.Protocol
	}
	seen := make(map[pairIndex]bool, len(pairs))
	stats := make([]PairStats, len(pairs))
	out := make([]PairEntry, len(pairs))
	for i, p := range pairs {
		k := PairKey{Src: names[p.Src], Dst: names[p.Dst], Proto: p.Protocol}
		at := pairIndex{p.Src, p.Dst, p.Protocol}
		if seen[at] {
			return nil, fmt.Errorf("pair %v: %w", k, errDuplicateKey)
		}
		seen[at] = true
		stats[i].Sent = p.Sent
		out[i] = PairEntry{Key: k, Stats: &stats[i]}
	}
	return out, nil
}

// errDuplicateKey: a rollup or pair listed twice would be counted twice.
var errDuplicateKey = fmt.Errorf("listed twice: %w", wire.ErrInvalidField)

func hostRollupsFromWire(rollups []*wire.HostRollup) (map[HostKey]*Rollup, error) {
	out := make(map[HostKey]*Rollup, len(rollups))
	for _, h := range rollups {
		k := HostKey{Host: h.Host, Direction: Out}
		if h.Direction == wire.Direction_DIRECTION_IN {
			k.Direction = In
		}
		if out[k] != nil {
			return nil, fmt.Errorf("host %s %s: %w", k.Host, k.Direction, errDuplicateKey)
		}
		r, err := rollupFromWire(h.Counts)
		if err != nil {
			return nil, fmt.Errorf("host %s %s: %w", k.Host, k.Direction, err)
		}
		out[k] = r
	}
	return out, nil
}

// locationRollupsFromWire reads the rollups of one level: rack, pod or dc.
func locationRollupsFromWire(level string, rollups []*wire.LocationRollup) (map[LocationPair]*Rollup, error) {
	out := make(map[LocationPair]*Rollup, len(rollups))
	for _, l := range rollups {
		k := LocationPair{Src: l.Src, Dst: l.Dst, Proto: l.Protocol}
		if out[k] != nil {
			return nil, fmt.Errorf("%s pair %s->%s/%s: %w", level, k.Src, k.Dst, k.Proto.Name(), errDuplicateKey)
		}
		r, err := rollupFromWire(l.Counts)
		if err != nil {
			return nil, fmt.Errorf("%s pair %s->%s/%s: %w", level, k.Src, k.Dst, k.Proto.Name(), err)
		}
		out[k] = r
	}
	return out, nil
}

func rollupFromWire(c *wire.RollupCounts) (*Rollup, error) {
	r := &Rollup{Sent: c.Sent, Lost: c.Lost, SynRetransmits: c.SynRetransmits}
	if len(c.RttSketch) == 0 {
		// At most wire.MaxExactRTTs (= maxExactRTTs): they stay exact.
		for _, ns := range c.RttNs {
			r.rtt.addExact(ns, float64(ns)/1e9, noIndex)
		}
		r.rtt.freeze()
		return r, nil
	}
	s, err := decodeSketch(c.RttSketch)
	if err != nil {
		return nil, err
	}
	// decodeSketch bounds the count to a uint32.
	r.rtt = latency{count: uint32(s.GetCount()), over: &latencyOverflow{sketch: s}}
	if uint64(r.rtt.count) > r.Sent {
		return nil, fmt.Errorf("%d RTTs of %d sent: %w", r.rtt.count, r.Sent, wire.ErrInvalidField)
	}
	return r, nil
}

// The bins a latency sketch can hold: RTTs of 1 ns (0 is the zero bin) to
// wire.MaxRTTNs, the longest a result may carry.
var (
	minSketchIndex = sketchMapping.Index(1e-9)
	maxSketchIndex = sketchMapping.Index(float64(wire.MaxRTTNs) / 1e9)
)

// decodeSketch decodes a latency sketch that rollupToWire encoded, with
// sketches-go's decoder behind checks: the library trusts its input (an
// index near the int range overflows its arithmetic, a negative count
// empties a dense store that then grows again on the next bin, and a
// store's decoding error is dropped), so every bin goes through
// checkedStore first, and the sketch is then rebuilt on plain stores.
func decodeSketch(data []byte) (*ddsketch.DDSketch, error) {
	positive, negative := &checkedStore{}, &checkedStore{negative: true}
	stores := []*checkedStore{positive, negative}
	provider := func() store.Store {
		s := stores[0]
		stores = stores[1:]
		s.CollapsingLowestDenseStore = store.NewCollapsingLowestDenseStore(maxSketchBins)
		return s
	}
	decoded, err := ddsketch.DecodeDDSketch(data, provider, sketchMapping)
	if err == nil {
		err = cmp.Or(positive.err, negative.err)
	}
	zeros := 0.0
	if err == nil {
		zeros = decoded.GetZeroCount()
		if !wholeCount(zeros) || positive.total+zeros > math.MaxUint32 {
			err = fmt.Errorf("zero bin count %v", zeros)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("latency sketch of %d bytes: %w: %v", len(data), wire.ErrMalformed, err)
	}
	s := ddsketch.NewDDSketch(sketchMapping, positive.CollapsingLowestDenseStore, store.NewCollapsingLowestDenseStore(maxSketchBins))
	if zeros > 0 {
		_ = s.AddWithCount(0, zeros) // a whole, positive count of 0 s cannot fail
	}
	return s, nil
}

// checkedStore is the store sketches-go decodes a sketch's bins into: it
// passes on only bins a meshlens latency sketch can hold (in range, whole
// counts, at most a uint32 in all, no negative RTT) and keeps the first
// error, as the store interface has no way to return it.
type checkedStore struct {
	*store.CollapsingLowestDenseStore
	negative bool
	total    float64
	err      error
}

func (s *checkedStore) Add(index int)      { s.AddWithCount(index, 1) }
func (s *checkedStore) AddBin(b store.Bin) { s.AddWithCount(b.Index(), b.Count()) }

func (s *checkedStore) AddWithCount(index int, count float64) {
	switch {
	case s.err != nil || count == 0: // a dense encoding lists empty bins
	case s.negative:
		s.err = errors.New("a negative RTT")
	case index < minSketchIndex || index > maxSketchIndex:
		s.err = fmt.Errorf("bin %d outside %d..%d", index, minSketchIndex, maxSketchIndex)
	case !wholeCount(count) || s.total+count > math.MaxUint32:
		s.err = fmt.Errorf("bin %d count %v after %v", index, count, s.total)
	default:
		s.total += count
		s.CollapsingLowestDenseStore.AddWithCount(index, count)
	}
}

func (s *checkedStore) DecodeAndMergeWith(b *[]byte, mode enc.SubFlag) error {
	if err := store.DecodeAndMergeWith(s, b, mode); err != nil && s.err == nil {
		s.err = err
	}
	return s.err
}

// wholeCount: bin counts are numbers of probes.
func wholeCount(n float64) bool { return n >= 0 && n <= math.MaxUint32 && n == math.Trunc(n) }
