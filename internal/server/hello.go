package server

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/topology"
)

// maxClosest is how many names an unknown host is offered.
const maxClosest = 3

// answerHello tells an agent whether its host is in the topology, so an
// agent started with a mistyped --host says so at once instead of waiting
// silently for a pinglist that never comes. The host is the subject's:
// an agent's credentials let it ask only about itself.
func (s *Server) answerHello(m *nats.Msg) {
	host := strings.TrimPrefix(m.Subject, bus.HelloSubjectPrefix+".")
	b, err := json.Marshal(hello(s.Topology(), host))
	if err != nil || m.Reply == "" {
		return
	}
	_ = m.Respond(b) // best effort: the agent asks again after a reconnect
}

func hello(t *topology.Topology, host string) bus.Hello {
	if t.Host(host) != nil {
		return bus.Hello{Known: true}
	}
	return bus.Hello{Closest: closestHosts(t, host, maxClosest)}
}

// closestHosts is up to n host names nearest to name by edit distance,
// nearest first, ties by name; names further than half their length
// away are no suggestion.
func closestHosts(t *topology.Topology, name string, n int) []string {
	type cand struct {
		name string
		d    int
	}
	var cs []cand
	for _, h := range t.Hosts {
		d := editDistance(strings.ToLower(name), strings.ToLower(h.Name))
		if d <= max(len(h.Name), len(name))/2 {
			cs = append(cs, cand{h.Name, d})
		}
	}
	slices.SortFunc(cs, func(a, b cand) int {
		if a.d != b.d {
			return a.d - b.d
		}
		return strings.Compare(a.name, b.name)
	})
	var out []string
	for _, c := range cs[:min(n, len(cs))] {
		out = append(out, c.name)
	}
	return out
}

// editDistance is the Levenshtein distance of two names, by byte.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}
			cur[j] = min(sub, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
