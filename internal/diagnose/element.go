package diagnose

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/meshlens/meshlens/internal/alert"
	"github.com/meshlens/meshlens/internal/topology"
)

// IncidentRef is an incident that concerns the element or host diagnosed.
type IncidentRef struct {
	ID     string    `json:"id"`
	State  string    `json:"state"`
	Start  time.Time `json:"start"`
	Title  string    `json:"title"`
	Blamed string    `json:"blamed,omitempty"`
	Why    string    `json:"why"`
}

// HostReport is the health of one host.
type HostReport struct {
	Host  string       `json:"host"`
	Rack  string       `json:"rack"`
	Pod   string       `json:"pod"`
	DC    string       `json:"dc"`
	Agent *AgentStatus `json:"agent,omitempty"`
	// AgentsUnavailable is set when the server does not list agents.
	AgentsUnavailable bool          `json:"agents_unavailable,omitempty"`
	Health            HostHealth    `json:"health"`
	Upstream          []Suspect     `json:"suspects_upstream"`
	Incidents         []IncidentRef `json:"incidents"`
	// IncidentsUnavailable is set when the server has no incidents API.
	IncidentsUnavailable bool     `json:"incidents_unavailable,omitempty"`
	Verdict              string   `json:"verdict"`
	Evidence             []string `json:"evidence"`
}

// ElementReport is the health of a switch or link and who depends on it.
type ElementReport struct {
	Element string `json:"element"`
	Kind    string `json:"kind"` // switch or link
	Role    string `json:"role,omitempty"`
	// Suspects naming it (or, for a switch, its links).
	Suspects  []Suspect     `json:"suspects"`
	Incidents []IncidentRef `json:"incidents"`
	// IncidentsUnavailable is set when the server has no incidents API.
	IncidentsUnavailable bool `json:"incidents_unavailable,omitempty"`
	// Racks whose traffic can cross it, and their hosts.
	Racks    []string `json:"racks_behind"`
	Hosts    int      `json:"hosts_behind"`
	Healthy  bool     `json:"healthy"`
	Verdict  string   `json:"verdict"`
	Evidence []string `json:"evidence"`
}

// incidents fetches incidents, tolerating a server without the endpoint.
func (c *Client) incidentsIfAny(ctx context.Context) ([]alert.Incident, bool, error) {
	incs, err := c.Incidents(ctx)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return nil, false, nil
	}
	return incs, err == nil, err
}

func within(name, el string) bool { return name == el || strings.HasPrefix(name, el+"-") }

func touchesName(element, name string) bool {
	for _, sep := range []string{"--", "->"} {
		if a, b, ok := strings.Cut(element, sep); ok {
			return a == name || b == name
		}
	}
	return element == name
}

// Host diagnoses one host.
func Host(ctx context.Context, c *Client, host string, now time.Time) (*HostReport, error) {
	topo, err := c.Topology(ctx)
	if err != nil {
		return nil, err
	}
	h := topo.Host(host)
	if h == nil {
		return nil, fmt.Errorf("diagnose: host %q is not in the topology", host)
	}
	r := &HostReport{Host: h.Name, Rack: h.Rack, Pod: h.Pod, DC: h.DC}
	agents, err := c.Agents(ctx)
	var ae *APIError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable:
		r.AgentsUnavailable = true
	case err != nil:
		return nil, err
	}
	for i := range agents {
		if agents[i].Host == host {
			r.Agent = &agents[i]
		}
	}
	if r.Health, err = hostHealth(ctx, c, h.Name, h.Rack, now); err != nil {
		return nil, err
	}
	suspects, err := c.Suspects(ctx)
	if err != nil {
		return nil, err
	}
	tor := topo.Rack(h.Rack).ToR
	for _, s := range suspects {
		if touchesName(s.Element, host) || touchesName(s.Element, tor) {
			r.Upstream = append(r.Upstream, s)
		}
	}
	incs, ok, err := c.incidentsIfAny(ctx)
	if err != nil {
		return nil, err
	}
	r.IncidentsUnavailable = !ok
	for _, inc := range incs {
		if why := hostInIncident(inc, h, tor); why != "" {
			r.Incidents = append(r.Incidents, incidentRef(inc, why))
		}
	}
	ev := func(format string, args ...any) { r.Evidence = append(r.Evidence, fmt.Sprintf(format, args...)) }
	if r.Agent != nil {
		ev("agent %s: %s, last seen %s, scheduling lag p99 %s, version %s", host, r.Agent.State, r.Agent.LastSeen.UTC().Format(time.RFC3339),
			time.Duration(r.Agent.SchedulingLagP99Seconds*float64(time.Second)).Round(time.Microsecond), r.Agent.Version)
	}
	ev("loss out %s, in %s; its rack %s: out %s, in %s", pct(r.Health.LossOut), pct(r.Health.LossIn), h.Rack, pct(r.Health.RackLossOut), pct(r.Health.RackLossIn))
	for _, s := range r.Upstream {
		ev("suspect upstream: %s %s (%s, estimate %.3g, confidence %.0f%%)", s.Kind, s.Element, s.Symptom, s.Estimate, s.Confidence*100)
	}
	for _, i := range r.Incidents {
		ev("incident %s (%s): %s", i.ID, i.State, i.Why)
	}
	switch {
	case !r.AgentsUnavailable && (r.Agent == nil || r.Agent.State == "missing"):
		r.Verdict = fmt.Sprintf("%s's agent has never reported: nothing is measured from it (is the agent running, and does it have credentials?).", host)
	case r.Agent != nil && r.Agent.State == "stale":
		r.Verdict = fmt.Sprintf("%s's agent stopped reporting at %s: the host, its agent or its path to the server is down.", host, r.Agent.LastSeen.UTC().Format(time.RFC3339))
	case r.Health.Sick:
		r.Verdict = fmt.Sprintf("%s is a sick host: it %s. Not the network: drain or repair the host.", host, r.Health.Why)
	case len(r.Upstream) > 0:
		s := r.Upstream[0]
		r.Verdict = fmt.Sprintf("%s itself looks fine, but %s %s above it is blamed (%s, confidence %.0f%%): its traffic suffers from the network.", host, s.Kind, s.Element, s.Symptom, s.Confidence*100)
	default:
		r.Verdict = fmt.Sprintf("%s is healthy: its loss is in line with its rack's and nothing above it is blamed.", host)
	}
	return r, nil
}

func hostInIncident(inc alert.Incident, h *topology.Host, tor string) string {
	if inc.Blamed != nil && (touchesName(inc.Blamed.Element, h.Name) || touchesName(inc.Blamed.Element, tor)) {
		return "blames " + inc.Blamed.Element
	}
	for _, s := range inc.Scopes {
		for _, el := range []string{s.Host, s.Rack, s.Pod, s.DC} {
			if el != "" && within(h.Name, el) {
				return "its scope " + el + " includes the host"
			}
		}
	}
	for _, p := range inc.AffectedPairs {
		if strings.Contains(p, h.Name) {
			return "affects its pair " + p
		}
	}
	return ""
}

func incidentRef(inc alert.Incident, why string) IncidentRef {
	ref := IncidentRef{ID: inc.ID, State: string(inc.State), Start: inc.Start, Title: inc.Title, Why: why}
	if inc.Blamed != nil {
		ref.Blamed = inc.Blamed.Element
	}
	return ref
}

// Element diagnoses a switch or a link (A--B or A->B).
func Element(ctx context.Context, c *Client, name string) (*ElementReport, error) {
	topo, err := c.Topology(ctx)
	if err != nil {
		return nil, err
	}
	kind, ok := topo.Lookup(name)
	if !ok || (kind != topology.KindSwitch && kind != topology.KindLink) {
		return nil, fmt.Errorf("diagnose: %q is not a switch or link of the topology (hosts: meshlens diagnose host)", name)
	}
	r := &ElementReport{Element: name, Kind: string(kind)}
	var ends []string
	if kind == topology.KindSwitch {
		r.Role = string(topo.Switch(name).Role)
		ends = []string{name}
	} else {
		a, b, _, _ := topology.ParseLinkName(name)
		ends = []string{a, b}
	}
	matches := func(element string) bool {
		if element == name {
			return true
		}
		if kind == topology.KindSwitch {
			return touchesName(element, name)
		}
		a, b, _, err := topology.ParseLinkName(element)
		return err == nil && ((a == ends[0] && b == ends[1]) || (a == ends[1] && b == ends[0]))
	}
	suspects, err := c.Suspects(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range suspects {
		if matches(s.Element) {
			r.Suspects = append(r.Suspects, s)
		}
	}
	incs, ok, err := c.incidentsIfAny(ctx)
	if err != nil {
		return nil, err
	}
	r.IncidentsUnavailable = !ok
	for _, inc := range incs {
		if inc.Blamed != nil && matches(inc.Blamed.Element) {
			r.Incidents = append(r.Incidents, incidentRef(inc, "blames "+inc.Blamed.Element))
		}
	}
	// Who depends on it: the racks below its lower end.
	lower := ends[0]
	if len(ends) == 2 && layer(topo, ends[1]) < layer(topo, ends[0]) {
		lower = ends[1]
	}
	r.Racks, r.Hosts = racksBehind(topo, lower)
	r.Healthy = len(r.Suspects) == 0
	ev := func(format string, args ...any) { r.Evidence = append(r.Evidence, fmt.Sprintf(format, args...)) }
	for _, s := range r.Suspects {
		ev("suspect %s %s: %s, estimate %.3g, confidence %.0f%%; %d anomalous of %.0f probes through it (%.1f expected), from %d pairs",
			s.Kind, s.Element, s.Symptom, s.Estimate, s.Confidence*100, s.Evidence.Anomalous, s.Evidence.Probes, s.Evidence.Expected, s.Evidence.Pairs)
	}
	for _, i := range r.Incidents {
		ev("incident %s (%s) %s", i.ID, i.State, i.Why)
	}
	ev("%d racks (%d hosts) send traffic through it", len(r.Racks), r.Hosts)
	if r.Healthy {
		r.Verdict = fmt.Sprintf("%s is healthy as far as the localizer sees: nothing blames it.", name)
	} else {
		s := r.Suspects[0]
		r.Verdict = fmt.Sprintf("%s is blamed: %s %s (%s, confidence %.0f%%); %d racks (%d hosts) depend on it.", name, s.Kind, s.Element, s.Symptom, s.Confidence*100, len(r.Racks), r.Hosts)
	}
	return r, nil
}

func layer(t *topology.Topology, name string) int {
	if s := t.Switch(name); s != nil {
		return s.Role.Layer()
	}
	return 0 // a host
}

// racksBehind lists the racks whose uplinks reach el: a ToR's rack, a
// leaf's pod, a spine's DC, every rack for a WAN router; a host's own rack.
func racksBehind(t *topology.Topology, el string) ([]string, int) {
	var racks []string
	hosts := 0
	match := func(r *topology.Rack) bool {
		if h := t.Host(el); h != nil {
			return r.Name == h.Rack
		}
		s := t.Switch(el)
		if s == nil {
			return false
		}
		switch s.Role {
		case topology.RoleToR:
			return r.Name == s.Rack
		case topology.RoleLeaf:
			return r.Pod == s.Pod
		case topology.RoleSpine:
			return r.DC == s.DC
		}
		return true
	}
	for _, r := range t.Racks {
		if match(r) {
			racks = append(racks, r.Name)
			hosts += len(r.Hosts)
		}
	}
	if h := t.Host(el); h != nil {
		hosts = 1
	}
	sort.Strings(racks)
	return racks, hosts
}

// WriteHost prints a host report.
func WriteHost(w io.Writer, r *HostReport) error {
	var b strings.Builder
	fmt.Fprintf(&b, "host %s  (rack %s, pod %s, %s)\n\nverdict: %s\n\nevidence:\n", r.Host, r.Rack, r.Pod, r.DC, r.Verdict)
	for _, e := range r.Evidence {
		fmt.Fprintf(&b, "  - %s\n", e)
	}
	if r.IncidentsUnavailable {
		b.WriteString("  (this server does not serve incidents)\n")
	} else if len(r.Incidents) == 0 {
		b.WriteString("  - no recent incident concerns it\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteElement prints an element report.
func WriteElement(w io.Writer, r *ElementReport) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Kind, r.Element)
	if r.Role != "" {
		fmt.Fprintf(&b, " (%s)", r.Role)
	}
	fmt.Fprintf(&b, "\n\nverdict: %s\n\nevidence:\n", r.Verdict)
	for _, e := range r.Evidence {
		fmt.Fprintf(&b, "  - %s\n", e)
	}
	if r.IncidentsUnavailable {
		b.WriteString("  (this server does not serve incidents)\n")
	}
	if len(r.Racks) > 0 {
		shown := r.Racks
		if len(shown) > 12 {
			shown = shown[:12]
		}
		fmt.Fprintf(&b, "\nracks behind it: %s", strings.Join(shown, ", "))
		if len(r.Racks) > len(shown) {
			fmt.Fprintf(&b, ", ... (%d in all)", len(r.Racks))
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
