package wire

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// The codec is vtprotobuf's generated code (meshlens_vtproto.pb.go, `make
// proto`): the server decodes every result of the fleet, and Decode with it
// (validation included) is about 1.2-1.3x as fast as protobuf-go's
// reflection-driven decoder alone, more with the batch pool
// (BenchmarkDecode compares both). It skips proto3's UTF-8 check on
// strings, which validBatchStrings puts back (names become label values
// and JSON), and keeps unknown fields' bytes unchecked, which Decode drops.

// Limits on what a batch may carry. A batch over them is refused whole: an
// agent never needs more, and the server must not be made to allocate more.
const (
	MaxBatchBytes      = 1 << 20 // encoded size
	MaxResultsPerBatch = 20000
	MaxNameLen         = 253 // host names, targets, addresses
	MaxErrorLen        = 256
	// MaxRTTNs bounds a result's RTT: a probe is lost at its timeout,
	// shorter than its interval, and no agent probes less often than
	// hourly. 1e18 ns was once accepted into the latency sketches.
	MaxRTTNs = int64(3600e9)
)

// Reasons a batch is rejected; they are the `reason` label of
// meshlens_ingest_rejected_total.
var (
	ErrTooLarge     = errors.New("batch too large")
	ErrMalformed    = errors.New("malformed batch")
	ErrInvalidField = errors.New("invalid field")
)

// Reason maps a Decode/Validate error to its short counter label.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrTooLarge):
		return "too_large"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrInvalidField):
		return "invalid_field"
	default:
		return "other"
	}
}

// Encode marshals a batch.
func Encode(b *Batch) ([]byte, error) {
	data, err := b.MarshalVT()
	if err != nil {
		return nil, fmt.Errorf("wire: encode batch %d of %q: %w", b.GetSeq(), b.GetAgent(), err)
	}
	if len(data) > MaxBatchBytes {
		return nil, fmt.Errorf("wire: batch %d of %q is %d bytes: %w", b.GetSeq(), b.GetAgent(), len(data), ErrTooLarge)
	}
	return data, nil
}

// Decode unmarshals and validates one batch. The batch comes from a pool:
// a caller that is done with it (and keeps no pointer into it) may hand it
// back with Release, so that the next decode reuses its results instead of
// allocating a thousand of them; strings read from it stay valid.
func Decode(data []byte) (*Batch, error) {
	if len(data) > MaxBatchBytes {
		return nil, fmt.Errorf("wire: %d bytes: %w", len(data), ErrTooLarge)
	}
	b := BatchFromVTPool()
	err := b.UnmarshalVT(data)
	switch {
	case err != nil:
		err = fmt.Errorf("wire: %w: %v", ErrMalformed, err)
	case !validBatchStrings(b):
		err = fmt.Errorf("wire: batch of %d bytes: a string is not UTF-8: %w", len(data), ErrMalformed)
	default:
		b.discardUnknown()
		err = Validate(b)
	}
	if err != nil {
		Release(b)
		return nil, err
	}
	return b, nil
}

// Release returns a batch from Decode to the pool; b must not be used
// afterwards, nor any of its results.
func Release(b *Batch) { b.ReturnToVTPool() }

// Validate checks the fields a server relies on.
func Validate(b *Batch) error {
	if b.Agent == "" || len(b.Agent) > MaxNameLen {
		return fmt.Errorf("wire: agent name of %d bytes: %w", len(b.Agent), ErrInvalidField)
	}
	if b.Seq == 0 {
		return fmt.Errorf("wire: batch of %q has seq 0: %w", b.Agent, ErrInvalidField)
	}
	if b.CompleteBeforeUnixNano < 0 {
		return fmt.Errorf("wire: batch %d of %q: negative complete_before: %w", b.Seq, b.Agent, ErrInvalidField)
	}
	if len(b.Results) > MaxResultsPerBatch {
		return fmt.Errorf("wire: batch %d of %q has %d results: %w", b.Seq, b.Agent, len(b.Results), ErrTooLarge)
	}
	for i, r := range b.Results {
		switch {
		case r == nil:
			return fmt.Errorf("wire: batch %d of %q result %d is empty: %w", b.Seq, b.Agent, i, ErrInvalidField)
		case r.Dst == "" || len(r.Dst) > MaxNameLen:
			return fmt.Errorf("wire: batch %d of %q result %d: dst of %d bytes: %w", b.Seq, b.Agent, i, len(r.Dst), ErrInvalidField)
		case !r.Protocol.Known():
			return fmt.Errorf("wire: batch %d of %q result %d: protocol %d: %w", b.Seq, b.Agent, i, r.Protocol, ErrInvalidField)
		case r.Outcome == Outcome_OUTCOME_UNSPECIFIED || r.Outcome > Outcome_OUTCOME_ERROR:
			return fmt.Errorf("wire: batch %d of %q result %d: outcome %d: %w", b.Seq, b.Agent, i, r.Outcome, ErrInvalidField)
		case r.RttNs < 0 || r.RttNs > MaxRTTNs:
			return fmt.Errorf("wire: batch %d of %q result %d: rtt %d ns outside 0..%d: %w", b.Seq, b.Agent, i, r.RttNs, MaxRTTNs, ErrInvalidField)
		case len(r.Error) > MaxErrorLen || len(r.SrcAddr) > MaxNameLen || len(r.DstAddr) > MaxNameLen:
			return fmt.Errorf("wire: batch %d of %q result %d: oversized string: %w", b.Seq, b.Agent, i, ErrInvalidField)
		}
	}
	return nil
}

// Lost reports whether a result counts as a dropped probe for loss ratios.
// A refusal or a local error says nothing about the network and is neither
// sent nor lost; see Counts.
func Lost(r *ProbeResult) bool {
	return r.Outcome == Outcome_OUTCOME_LOST || r.Outcome == Outcome_OUTCOME_SYN_RETRANSMIT
}

// Counts reports whether a result is a network measurement at all (it
// counts as sent). Local errors and refusals are excluded so that a stopped
// responder or a bad socket does not read as packet loss.
func Counts(r *ProbeResult) bool {
	switch r.Outcome {
	case Outcome_OUTCOME_OK, Outcome_OUTCOME_LOST, Outcome_OUTCOME_SYN_RETRANSMIT, Outcome_OUTCOME_BAD_RESPONSE:
		return true
	}
	return false
}

// Limits of a path report.
const (
	MaxTracedPerReport = 2000
	MaxHops            = 64
)

// UnknownHop marks a TTL no router answered in TracedProbe.Hops.
const UnknownHop = "*"

// DecodePathReport unmarshals and validates one path report.
func DecodePathReport(data []byte) (*PathReport, error) {
	if len(data) > MaxBatchBytes {
		return nil, fmt.Errorf("wire: path report of %d bytes: %w", len(data), ErrTooLarge)
	}
	r := new(PathReport)
	if err := r.UnmarshalVT(data); err != nil {
		return nil, fmt.Errorf("wire: path report: %w: %v", ErrMalformed, err)
	}
	if !validReportStrings(r) {
		return nil, fmt.Errorf("wire: path report of %d bytes: a string is not UTF-8: %w", len(data), ErrMalformed)
	}
	r.unknownFields = nil
	for _, p := range r.Probes {
		if p != nil {
			p.unknownFields = nil
		}
	}
	if r.Agent == "" || len(r.Agent) > MaxNameLen {
		return nil, fmt.Errorf("wire: path report agent name of %d bytes: %w", len(r.Agent), ErrInvalidField)
	}
	if len(r.Probes) > MaxTracedPerReport {
		return nil, fmt.Errorf("wire: path report of %q has %d probes: %w", r.Agent, len(r.Probes), ErrTooLarge)
	}
	for i, p := range r.Probes {
		if p == nil || p.Dst == "" || len(p.Dst) > MaxNameLen || len(p.Hops) < 1 || len(p.Hops) > MaxHops {
			return nil, fmt.Errorf("wire: path report of %q probe %d: missing dst or %d hops: %w", r.Agent, i, len(p.GetHops()), ErrInvalidField)
		}
		for _, h := range p.Hops {
			if h == "" || len(h) > MaxNameLen {
				return nil, fmt.Errorf("wire: path report of %q probe %d: hop name of %d bytes: %w", r.Agent, i, len(h), ErrInvalidField)
			}
		}
		if p.Reverse && (!p.Lost || p.DstPort == 0 || p.DstPort > 65535) {
			// A reverse trace is asked for a lost probe only, and joins it
			// by the prober's port.
			return nil, fmt.Errorf("wire: path report of %q probe %d: reverse trace of a probe not lost or without its port: %w", r.Agent, i, ErrInvalidField)
		}
	}
	return r, nil
}

// discardUnknown drops the fields this schema does not know (a newer
// agent's, or garbage): the server reads none of them, and the generated
// decoder keeps their bytes unchecked, so none is kept to be re-sent.
func (b *Batch) discardUnknown() {
	b.unknownFields = nil
	if b.SchedulingLag != nil {
		b.SchedulingLag.unknownFields = nil
	}
	for _, r := range b.Results {
		if r == nil {
			continue
		}
		r.unknownFields = nil
		if r.Http != nil {
			r.Http.unknownFields = nil
		}
	}
}

// validBatchStrings is proto3's rule that strings are UTF-8, for a batch.
func validBatchStrings(b *Batch) bool {
	if !utf8.ValidString(b.Agent) || !utf8.ValidString(b.AgentVersion) {
		return false
	}
	for _, r := range b.Results {
		if r != nil && !(utf8.ValidString(r.Dst) && utf8.ValidString(r.SrcAddr) && utf8.ValidString(r.DstAddr) && utf8.ValidString(r.Error)) {
			return false
		}
	}
	return true
}

// validReportStrings is proto3's rule that strings are UTF-8, for a path
// report.
func validReportStrings(r *PathReport) bool {
	if !utf8.ValidString(r.Agent) {
		return false
	}
	for _, p := range r.Probes {
		if p == nil {
			continue
		}
		if !utf8.ValidString(p.Dst) {
			return false
		}
		for _, h := range p.Hops {
			if !utf8.ValidString(h) {
				return false
			}
		}
	}
	return true
}

// Limits of a window rollup, one partition's part of a sealed window
// (aggregate.EncodeWindow). The analyzer decodes what every aggregator
// sends; one over them is refused whole, and the aggregator refuses to
// send it rather than have it refused downstream.
const (
	// RollupVersion is the WindowRollup format written and the only one
	// read.
	RollupVersion = 1
	// MaxRollupBytes bounds an encoded window rollup. NATS refuses a
	// message over the server's max_payload (1 MiB by default, 8 MiB the
	// largest it recommends): deployments must raise max_payload, and the
	// rollups stream's max_msg_size, to this.
	MaxRollupBytes = 8 << 20
	// MaxRollupEntries bounds each list of a window rollup (host, rack,
	// pod and DC rollups, pair names, pairs): a pair takes at least 8 bytes,
	// so 8 MiB cannot carry many more.
	MaxRollupEntries = 1 << 20
	// MaxExactRTTs is how many RTTs a rollup carries exactly; one with
	// more carries its sketch (aggregate's latency makes the same switch).
	MaxExactRTTs = 64
	// MaxSketchBytes bounds one encoded latency sketch: 2048 bins
	// (aggregate's bound) at a few bytes each.
	MaxSketchBytes = 32 << 10
	// MaxWindowNs bounds a window's width: aggregators seal windows of
	// seconds to minutes.
	MaxWindowNs = int64(3600e9)
)

// DecodeWindowRollup unmarshals and validates one window rollup. Its
// latency sketches are only bounded in size here: aggregate.DecodeWindow
// checks what they hold.
func DecodeWindowRollup(data []byte) (*WindowRollup, error) {
	if len(data) > MaxRollupBytes {
		return nil, fmt.Errorf("wire: window rollup of %d bytes: %w", len(data), ErrTooLarge)
	}
	r := new(WindowRollup)
	if err := r.UnmarshalVT(data); err != nil {
		return nil, fmt.Errorf("wire: window rollup: %w: %v", ErrMalformed, err)
	}
	if !validRollupStrings(r) {
		return nil, fmt.Errorf("wire: window rollup of %d bytes: a string is not UTF-8: %w", len(data), ErrMalformed)
	}
	r.discardUnknown()
	if err := ValidateWindowRollup(r); err != nil {
		return nil, err
	}
	return r, nil
}

// ValidateWindowRollup checks the fields the analyzer relies on.
func ValidateWindowRollup(r *WindowRollup) error {
	if r.Version != RollupVersion {
		return fmt.Errorf("wire: window rollup version %d, want %d: %w", r.Version, RollupVersion, ErrInvalidField)
	}
	// The difference in uint64: end-start may overflow an int64.
	if r.EndUnixNano <= r.StartUnixNano || uint64(r.EndUnixNano)-uint64(r.StartUnixNano) > uint64(MaxWindowNs) {
		return fmt.Errorf("wire: window rollup [%d, %d): not a window of at most %d ns: %w", r.StartUnixNano, r.EndUnixNano, MaxWindowNs, ErrInvalidField)
	}
	what := fmt.Sprintf("window rollup of partition %d at %d", r.Partition, r.StartUnixNano)
	for _, l := range []struct {
		name string
		n    int
	}{{"hosts", len(r.Hosts)}, {"rack pairs", len(r.RackPairs)}, {"pod pairs", len(r.PodPairs)},
		{"dc pairs", len(r.DcPairs)}, {"pair names", len(r.PairNames)}, {"pairs", len(r.Pairs)}} {
		if l.n > MaxRollupEntries {
			return fmt.Errorf("wire: %s has %d %s: %w", what, l.n, l.name, ErrTooLarge)
		}
	}
	for i, h := range r.Hosts {
		if err := validHostRollup(h); err != nil {
			return fmt.Errorf("wire: %s host %d: %w", what, i, err)
		}
	}
	for level, rollups := range [][]*LocationRollup{r.RackPairs, r.PodPairs, r.DcPairs} {
		for i, l := range rollups {
			if err := validLocationRollup(l); err != nil {
				return fmt.Errorf("wire: %s %s pair %d: %w", what, []string{"rack", "pod", "dc"}[level], i, err)
			}
		}
	}
	for i, name := range r.PairNames {
		if name == "" || len(name) > MaxNameLen {
			return fmt.Errorf("wire: %s pair name %d of %d bytes: %w", what, i, len(name), ErrInvalidField)
		}
	}
	for i, p := range r.Pairs {
		switch {
		case p == nil:
			return fmt.Errorf("wire: %s pair %d is empty: %w", what, i, ErrInvalidField)
		case uint64(p.Src) >= uint64(len(r.PairNames)) || uint64(p.Dst) >= uint64(len(r.PairNames)):
			return fmt.Errorf("wire: %s pair %d: names %d, %d of %d: %w", what, i, p.Src, p.Dst, len(r.PairNames), ErrInvalidField)
		case !p.Protocol.Known():
			return fmt.Errorf("wire: %s pair %d: protocol %d: %w", what, i, p.Protocol, ErrInvalidField)
		}
	}
	if len(r.Agents) > MaxRollupEntries {
		return fmt.Errorf("wire: %s has %d agents: %w", what, len(r.Agents), ErrTooLarge)
	}
	for i, a := range r.Agents {
		switch {
		case a == nil:
			return fmt.Errorf("wire: %s agent %d is empty: %w", what, i, ErrInvalidField)
		case a.Agent == "" || len(a.Agent) > MaxNameLen || len(a.Version) > MaxNameLen:
			return fmt.Errorf("wire: %s agent %d: name of %d bytes, version of %d: %w", what, i, len(a.Agent), len(a.Version), ErrInvalidField)
		case a.SchedulingLagP99Ns < 0 || a.SchedulingLagP99Ns > MaxRTTNs:
			return fmt.Errorf("wire: %s agent %q: scheduling lag %d ns: %w", what, a.Agent, a.SchedulingLagP99Ns, ErrInvalidField)
		}
	}
	return nil
}

func validHostRollup(h *HostRollup) error {
	switch {
	case h == nil:
		return fmt.Errorf("empty: %w", ErrInvalidField)
	case h.Host == "" || len(h.Host) > MaxNameLen:
		return fmt.Errorf("host name of %d bytes: %w", len(h.Host), ErrInvalidField)
	case h.Direction != Direction_DIRECTION_OUT && h.Direction != Direction_DIRECTION_IN:
		return fmt.Errorf("%q: direction %d: %w", h.Host, h.Direction, ErrInvalidField)
	}
	if err := validRollupCounts(h.Counts); err != nil {
		return fmt.Errorf("%q: %w", h.Host, err)
	}
	return nil
}

func validLocationRollup(l *LocationRollup) error {
	switch {
	case l == nil:
		return fmt.Errorf("empty: %w", ErrInvalidField)
	case l.Src == "" || len(l.Src) > MaxNameLen || l.Dst == "" || len(l.Dst) > MaxNameLen:
		return fmt.Errorf("names of %d and %d bytes: %w", len(l.Src), len(l.Dst), ErrInvalidField)
	case !l.Protocol.Known():
		return fmt.Errorf("%s->%s: protocol %d: %w", l.Src, l.Dst, l.Protocol, ErrInvalidField)
	}
	if err := validRollupCounts(l.Counts); err != nil {
		return fmt.Errorf("%s->%s: %w", l.Src, l.Dst, err)
	}
	return nil
}

// validRollupCounts: SYN retransmits are losses, RTTs are of probes sent,
// and the RTTs are either exact or a sketch.
func validRollupCounts(c *RollupCounts) error {
	switch {
	case c == nil:
		return fmt.Errorf("no counts: %w", ErrInvalidField)
	case c.Lost > c.Sent || c.SynRetransmits > c.Lost:
		return fmt.Errorf("%d sent, %d lost, %d syn retransmits: %w", c.Sent, c.Lost, c.SynRetransmits, ErrInvalidField)
	case len(c.RttNs) > MaxExactRTTs || uint64(len(c.RttNs)) > c.Sent:
		return fmt.Errorf("%d exact RTTs of %d sent: %w", len(c.RttNs), c.Sent, ErrInvalidField)
	case len(c.RttNs) > 0 && len(c.RttSketch) > 0:
		return fmt.Errorf("both exact RTTs and a sketch: %w", ErrInvalidField)
	case len(c.RttSketch) > MaxSketchBytes:
		return fmt.Errorf("latency sketch of %d bytes: %w", len(c.RttSketch), ErrTooLarge)
	}
	return nil
}

// discardUnknown: as Batch's.
func (r *WindowRollup) discardUnknown() {
	r.unknownFields = nil
	for _, h := range r.Hosts {
		if h != nil {
			h.unknownFields = nil
			h.Counts.discardUnknown()
		}
	}
	for _, rollups := range [][]*LocationRollup{r.RackPairs, r.PodPairs, r.DcPairs} {
		for _, l := range rollups {
			if l != nil {
				l.unknownFields = nil
				l.Counts.discardUnknown()
			}
		}
	}
	for _, p := range r.Pairs {
		if p != nil {
			p.unknownFields = nil
		}
	}
}

func (c *RollupCounts) discardUnknown() {
	if c != nil {
		c.unknownFields = nil
	}
}

// validRollupStrings is proto3's rule that strings are UTF-8, for a window
// rollup.
func validRollupStrings(r *WindowRollup) bool {
	for _, h := range r.Hosts {
		if h != nil && !utf8.ValidString(h.Host) {
			return false
		}
	}
	for _, rollups := range [][]*LocationRollup{r.RackPairs, r.PodPairs, r.DcPairs} {
		for _, l := range rollups {
			if l != nil && !(utf8.ValidString(l.Src) && utf8.ValidString(l.Dst)) {
				return false
			}
		}
	}
	for _, name := range r.PairNames {
		if !utf8.ValidString(name) {
			return false
		}
	}
	for _, a := range r.Agents {
		if a != nil && !(utf8.ValidString(a.Agent) && utf8.ValidString(a.Version)) {
			return false
		}
	}
	return true
}
