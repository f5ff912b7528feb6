package alert

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/meshlens/meshlens/internal/slo"
)

// Culprit is the element blamed for a scope's symptoms, as the localizer
// reports it.
type Culprit struct {
	// Element is a link ("A--B", "A->B"), a switch or a host.
	Element string `json:"element"`
	// Kind is link, device or host.
	Kind string `json:"kind"`
	// Symptom is loss, down, blackhole, latency, agent_slow...
	Symptom string `json:"symptom,omitempty"`
	// Estimate is the drop rate (0..1) or added latency (seconds).
	Estimate   float64 `json:"estimate"`
	Confidence float64 `json:"confidence"`
	// Evidence in words, e.g. "412 of 52,000 probes through it lost, from
	// 37 pairs".
	Evidence string `json:"evidence,omitempty"`
	// Pairs affected ("src -> dst"), as many as the localizer lists.
	Pairs []string `json:"pairs,omitempty"`
	// At is when the localizer concluded this.
	At time.Time `json:"at"`
}

// Blamer names the element most likely to explain symptoms in a scope (nil
// scope: no location, e.g. a service SLO) at a time. Implementations must
// be safe for concurrent use.
type Blamer interface {
	Blame(scope *slo.Scope, at time.Time) (Culprit, bool)
}

// BlamerFunc adapts a function to Blamer.
type BlamerFunc func(scope *slo.Scope, at time.Time) (Culprit, bool)

// Blame calls f.
func (f BlamerFunc) Blame(scope *slo.Scope, at time.Time) (Culprit, bool) { return f(scope, at) }

// Board is a Blamer over the localizer's latest suspects: the analyzer
// calls Update after each localized window. It is safe for concurrent use.
type Board struct {
	// MinConfidence below which a suspect is not blamed.
	MinConfidence float64
	// MaxAge after which a suspect is stale and not blamed, counted from
	// Delay after the end of the window it comes from.
	MaxAge time.Duration
	// Delay is how long after its window ends a verdict reaches the board
	// at the earliest (the aggregator's lateness and more): a suspect is
	// not stale for being as fresh as the pipeline allows.
	Delay time.Duration

	mu       sync.Mutex
	suspects []Culprit
	// seen: when each element was last a suspect of MinConfidence, kept
	// while that is within MaxAge (see Fresh).
	seen map[string]time.Time
}

// NewBoard returns a Board blaming suspects of at least minConfidence not
// older than maxAge.
func NewBoard(minConfidence float64, maxAge time.Duration) *Board {
	return &Board{MinConfidence: minConfidence, MaxAge: maxAge}
}

// Update replaces the suspects (each with At set by the caller).
func (b *Board) Update(suspects []Culprit) {
	s := append([]Culprit(nil), suspects...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].Confidence > s[j].Confidence })
	b.mu.Lock()
	defer b.mu.Unlock()
	b.suspects = s
	if b.seen == nil {
		b.seen = map[string]time.Time{}
	}
	var newest time.Time
	for _, c := range s {
		if c.Confidence >= b.MinConfidence && c.At.After(b.seen[c.Element]) {
			b.seen[c.Element] = c.At
		}
		if c.At.After(newest) {
			newest = c.At
		}
	}
	for el, at := range b.seen {
		if b.MaxAge > 0 && newest.Sub(at) > b.MaxAge {
			delete(b.seen, el)
		}
	}
}

// Fresh reports whether element was a suspect of MinConfidence within
// MaxAge before at (counted as Blame counts it): an incident keeps a
// culprit that the localizer still names now and then, and drops one it
// has stopped naming.
func (b *Board) Fresh(element string, at time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	seen, ok := b.seen[element]
	return ok && (b.MaxAge <= 0 || at.Sub(seen)-b.Delay <= b.MaxAge)
}

// Blame returns the most confident fresh suspect that touches the scope
// (its name contains the scope's element), or failing that the most
// confident one in the scope's datacenter (a spine or WAN link hurts racks
// it is not named after). A nil scope gets the most confident suspect.
func (b *Board) Blame(scope *slo.Scope, at time.Time) (Culprit, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	el := scopeElement(scope)
	var dcMatch *Culprit
	for i := range b.suspects {
		c := &b.suspects[i]
		if c.Confidence < b.MinConfidence || (b.MaxAge > 0 && at.Sub(c.At)-b.Delay > b.MaxAge) || c.At.After(at) {
			continue
		}
		if el == "" || touches(c.Element, el) {
			return *c, true
		}
		if dcMatch == nil && touches(c.Element, dcOf(el)) {
			dcMatch = c
		}
	}
	if dcMatch != nil {
		return *dcMatch, true
	}
	return Culprit{}, false
}

// scopeElement is the element a scope is about ("" for the whole fabric or
// no location).
func scopeElement(s *slo.Scope) string {
	if s == nil {
		return ""
	}
	for _, v := range []string{s.Host, s.Rack, s.Pod, s.DC} {
		if v != "" {
			return v
		}
	}
	return ""
}

func dcOf(el string) string {
	if i := strings.IndexByte(el, '-'); i > 0 {
		return el[:i]
	}
	return el
}

// touches says whether element name (a device, host or link "A--B",
// "A->B") is el or inside el by the fabric's naming.
func touches(element, el string) bool {
	if el == "" {
		return true
	}
	for _, part := range splitLink(element) {
		if within(part, el) {
			return true
		}
	}
	return false
}

func splitLink(e string) []string {
	if a, b, ok := strings.Cut(e, "--"); ok {
		return []string{a, b}
	}
	if a, b, ok := strings.Cut(e, "->"); ok {
		return []string{a, b}
	}
	return []string{e}
}

// contains says whether element outer holds element inner: itself, a
// link's directions ("A->B" in "A--B"), a switch's or host's links.
func contains(outer, inner string) bool {
	if outer == inner {
		return true
	}
	ends := splitLink(inner)
	if len(ends) != 2 {
		return false
	}
	if o := splitLink(outer); len(o) == 2 {
		return strings.Contains(outer, "--") && (ends[0] == o[0] && ends[1] == o[1] || ends[0] == o[1] && ends[1] == o[0])
	}
	return ends[0] == outer || ends[1] == outer
}

// within: name is el or below it (dc1-pod2-rack5-tor is within dc1-pod2).
func within(name, el string) bool {
	return name == el || strings.HasPrefix(name, el+"-")
}

// scopesOverlap says whether two scopes share probes by location: one's
// element contains the other's. The whole fabric overlaps every located
// scope; scopes without location (nil) overlap nothing.
func scopesOverlap(a, b *slo.Scope) bool {
	if a == nil || b == nil {
		return false
	}
	if a.Target != "" || b.Target != "" {
		return a.Target == b.Target
	}
	ea, eb := scopeElement(a), scopeElement(b)
	return ea == "" || eb == "" || within(ea, eb) || within(eb, ea)
}
