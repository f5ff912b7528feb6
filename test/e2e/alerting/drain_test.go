package alerting

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/alert"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/sim"
	"github.com/meshlens/meshlens/internal/slo"
	"github.com/meshlens/meshlens/internal/store"
	"github.com/meshlens/meshlens/internal/topology"
	"github.com/meshlens/meshlens/internal/wire"
)

// The same lossy ToR uplink as scenarioYAML, but the fault never ends: only
// draining the link can stop the burn. No background loss, so that "the
// drained link carries no traffic" reads as "rack3 loses nothing".
const persistentYAML = `
name: alerting-drain-e2e
seed: 7
topology: {generate: {dcs: 1, pods: 1, racks_per_pod: 4, hosts_per_rack: 8, leaves_per_pod: 2, spines: 2}}
probing: {interval: 10s, protocols: [tcp]}
duration: 16m
background: {loss: 0, latency: {base: 40us, jitter: 20us}}
faults:
  - {kind: link_loss, link: "` + faultLink + `", rate: 0.1, at: 2m}
`

// drainHoldDown is the remediation rule's hold-down.
const drainHoldDown = 3 * time.Minute

// fabricDrain is the remediation action of the simulator: it drains and
// undrains elements of the running fabric, as an operator's automation
// would on real switches.
type fabricDrain struct {
	fab     *sim.Fabric
	drained map[string]bool
	log     []string // "drain X", "undrain X", in order
}

func (d *fabricDrain) Run(_ context.Context, action, element, kind string) error {
	switch action {
	case alert.ActionDrain:
		d.drained[element] = true
	case alert.ActionUndrain:
		delete(d.drained, element)
	default:
		return fmt.Errorf("fabric drain: unknown action %q on %s %s", action, kind, element)
	}
	names := make([]string, 0, len(d.drained))
	for el := range d.drained {
		names = append(names, el)
	}
	sort.Strings(names)
	if err := d.fab.SetDrained(names); err != nil {
		return fmt.Errorf("fabric drain: %s %s: %w", action, element, err)
	}
	d.log = append(d.log, action+" "+element)
	return nil
}

// pageRecorder is a Receiver keeping every notification.
type pageRecorder struct {
	mu    sync.Mutex
	notes []alert.Notification
}

func (p *pageRecorder) Name() string { return "recorder" }
func (p *pageRecorder) Repeat() bool { return false }
func (p *pageRecorder) Send(_ context.Context, n alert.Notification) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notes = append(p.notes, n)
	return nil
}

// roundLoss is what one sealed window said about rack3's pairs.
type roundLoss struct {
	at         time.Time
	sent, lost uint64
	drained    []string // the fabric's drains while that window's probes ran
}

// TestRemediationEndsBurn closes the loop the other scenario test leaves
// open: the fault has no end, so the burn stops only because the
// remediator, in execute mode, drains the blamed link in the running
// simulator (routing avoids it from the next round). The SLO pages, the
// incident blames the link, the drain is audited, rack3 stops losing
// probes and the incident resolves with the link still drained.
//
// Then the documented behaviour of the hold-down: the remediator judges an
// element healthy when no open incident blames it, and a drained link
// carries no traffic, so nothing can blame it. After the hold-down it is
// undrained although the fault is still there; the loss and the page come
// back, and the remediator drains it again, until MaxActionsPerHour
// refuses a drain.
func TestRemediationEndsBurn(t *testing.T) {
	sc, err := sim.Parse("alerting-drain-e2e.yaml", []byte(persistentYAML), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir(), store.Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	x, err := localize.NewIndex(sc.Topology)
	if err != nil {
		t.Fatal(err)
	}
	// The run ends about now, so every time is a plausible recent one.
	base := time.Now().Truncate(sc.Interval).Add(-sc.Duration)
	fab, err := sim.NewFabric(sc, x, base)
	if err != nil {
		t.Fatal(err)
	}
	const batchDelay = time.Second
	agg, err := aggregate.New(aggregate.Config{Window: sc.Interval, Lateness: batchDelay, Recent: 2 * sc.Interval, Locator: sc.Topology})
	if err != nil {
		t.Fatal(err)
	}
	lz, err := localize.New(localize.NameMeshlens, x, localize.Config{})
	if err != nil {
		t.Fatal(err)
	}

	pages := &pageRecorder{}
	board := alert.NewBoard(0.5, 30*time.Second)
	mgr, err := alert.NewManager(alert.Config{Receivers: []alert.Receiver{pages}, Blamer: board, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	slos, err := slo.Parse(slo.File{Name: "rack3.yaml", Data: []byte(scenarioSLO)})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := slo.NewEngine(slo.Config{SLOs: slos, Querier: st, OnEvaluate: mgr.ObserveSLOs, ConsumedDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	action := &fabricDrain{fab: fab, drained: map[string]bool{}}
	rem, err := alert.NewRemediator(alert.RemediatorConfig{
		Rules:   []alert.RemediationRule{{Name: "drain-links", Kinds: []string{string(localize.KindLink)}, MinConfidence: 0.5, HoldDown: drainHoldDown, Action: action}},
		Execute: true, Layers: alert.TopologyLayers(sc.Topology), Manager: mgr,
	})
	if err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	cum := map[aggregate.LocationPair][2]float64{}
	var losses []roundLoss
	for r := 0; r < fab.Rounds(); r++ {
		drainedNow := fab.Drained()
		arrival := fab.RoundStart(r + 1).Add(batchDelay)
		if err := fab.Step(r, func(b *wire.Batch) error { return agg.Ingest(b, arrival) }); err != nil {
			t.Fatal(err)
		}
		sealed, err := agg.Advance(ctx, arrival)
		if err != nil {
			t.Fatal(err)
		}
		for _, sw := range sealed {
			w := &localize.Window{Sealed: sw}
			if sw.Start.Equal(fab.RoundStart(r)) {
				w.Traces = sim.ResolveReports(fab.Index(), fab.PathReports(), new(int))
			}
			sus, err := lz.Localize(w)
			if err != nil {
				t.Fatal(err)
			}
			at := sw.End
			rl := roundLoss{at: at, drained: drainedNow}
			app := st.Appender(ctx)
			for k, ru := range sw.RackPairs {
				c := cum[k]
				c[0] += float64(ru.Sent)
				c[1] += float64(ru.Lost)
				cum[k] = c
				if k.Src == "dc1-pod1-rack3" || k.Dst == "dc1-pod1-rack3" {
					rl.sent += ru.Sent
					rl.lost += ru.Lost
				}
			}
			losses = append(losses, rl)
			for k, c := range cum {
				for i, name := range []string{"meshlens_rack_pair_probes_total", "meshlens_rack_pair_probes_lost_total"} {
					ls := labels.FromStrings("__name__", name, "src_rack", k.Src, "dst_rack", k.Dst, "proto", aggregate.ProtoName(k.Proto))
					if _, err := app.Append(0, ls, at.UnixMilli(), c[i]); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := app.Commit(); err != nil {
				t.Fatal(err)
			}
			var culprits []alert.Culprit
			for _, su := range sus {
				culprits = append(culprits, alert.Culprit{Element: su.Element, Kind: string(su.Kind), Symptom: string(su.Symptom),
					Estimate: su.Estimate, Confidence: su.Confidence, At: at})
			}
			board.Update(culprits)
			if _, err := eng.EvaluateAt(ctx, at); err != nil {
				t.Fatal(err)
			}
			rem.Consider(ctx, at, mgr.Incidents())
			if err := mgr.Deliver(ctx, false); err != nil {
				t.Fatal(err)
			}
		}
	}

	decisions, err := rem.Decisions()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range decisions {
		t.Logf("audit: +%s %s %s taken=%v: %s", d.At.Sub(base), d.Action, d.Element, d.Taken, d.Reason)
	}
	incs := mgr.Incidents() // most recent first
	slices.Reverse(incs)
	for _, inc := range incs {
		blamed := "-"
		if inc.Blamed != nil {
			blamed = inc.Blamed.Element
		}
		t.Logf("incident %s %s: start +%s, detected +%s, blamed %s", inc.ID, inc.State, inc.Start.Sub(base), inc.Detected.Sub(base), blamed)
	}

	// The page, and its culprit.
	if len(incs) == 0 || incs[0].Blamed == nil {
		t.Fatalf("no incident blaming anything: %+v", incs)
	}
	// The localizer names a link by the direction(s) it sees losing:
	// "A--B", "A->B" or "B->A" all blame the physical link.
	physical := func(name string) string {
		a, b, _, err := topology.ParseLinkName(name)
		if err != nil {
			return name
		}
		na, _ := x.Node(a)
		nb, _ := x.Node(b)
		l, ok := x.Link(na, nb)
		if !ok {
			return name
		}
		return x.PhysicalName(l)
	}
	first := incs[0]
	link := first.Blamed.Element
	if first.Blamed.Kind != string(localize.KindLink) || physical(link) != faultLink {
		t.Fatalf("first incident blames %s %s, the fault is on %s", first.Blamed.Kind, link, faultLink)
	}
	paged := false
	pages.mu.Lock()
	for _, n := range pages.notes {
		for _, a := range n.Alerts {
			if n.GroupKey == first.ID && n.Status == "firing" && a.Labels["severity"] == "page" && a.SLO == "rack3-availability" {
				paged = true
			}
		}
	}
	pages.mu.Unlock()
	if !paged {
		t.Errorf("no page for incident %s reached the receiver", first.ID)
	}

	// The audited drain of the blamed link, on that incident.
	var drainAt, undrainAt time.Time
	for _, d := range decisions {
		if physical(d.Element) != faultLink || !d.Taken {
			continue
		}
		if d.Action == alert.ActionDrain && drainAt.IsZero() {
			if d.Incident != first.ID || d.DryRun || d.Rule != "drain-links" {
				t.Errorf("drain decision %+v, want one on incident %s by rule drain-links", d, first.ID)
			}
			drainAt = d.At
		}
		if d.Action == alert.ActionUndrain && undrainAt.IsZero() {
			undrainAt = d.At
		}
	}
	if drainAt.IsZero() {
		t.Fatalf("the audit records no drain of %s: %+v", link, decisions)
	}
	if len(action.log) == 0 || action.log[0] != "drain "+link {
		t.Fatalf("fabric actions %v, want a drain of %s first", action.log, link)
	}

	// The burn stops: from the first round run with the link drained until
	// it is undrained, rack3 loses nothing; before the drain it lost.
	var before, during uint64
	drainedWindows := 0
	for _, rl := range losses {
		switch {
		case rl.at.After(base.Add(2*time.Minute)) && !rl.at.After(drainAt):
			before += rl.lost
		case len(rl.drained) > 0:
			during += rl.lost
			drainedWindows++
		}
	}
	if before == 0 || drainedWindows == 0 || during != 0 {
		t.Errorf("rack3 lost %d probes between onset and drain, %d in %d windows with the link drained; want some, then none", before, during, drainedWindows)
	}

	// The incident resolves while the link is drained and the fault is on.
	if first.State != alert.IncidentResolved {
		t.Fatalf("first incident still %s: %+v", first.State, first.Timeline)
	}
	resolvedAt := first.Timeline[len(first.Timeline)-1].At
	var kinds []string
	for _, e := range first.Timeline {
		kinds = append(kinds, e.Kind)
		if e.Kind == alert.EventResolution {
			resolvedAt = e.At
		}
	}
	for _, k := range []string{alert.EventDetection, alert.EventLocalization, alert.EventMitigation, alert.EventResolution} {
		if !slices.Contains(kinds, k) {
			t.Errorf("first incident's timeline lacks %s: %v", k, kinds)
		}
	}
	if !resolvedAt.After(drainAt) || (!undrainAt.IsZero() && !resolvedAt.Before(undrainAt)) {
		t.Errorf("resolved at +%s; want after the drain (+%s) and before any undrain (+%s)", resolvedAt.Sub(base), drainAt.Sub(base), undrainAt.Sub(base))
	}

	// The hold-down: undrained once no open incident blamed the link for
	// drainHoldDown, fault or not; the burn comes back, and so does the
	// drain, on a new incident.
	if undrainAt.IsZero() {
		t.Fatalf("no undrain after the hold-down: actions %v", action.log)
	}
	if undrainAt.Sub(resolvedAt) < drainHoldDown {
		t.Errorf("undrained +%s after the resolution, before the %s hold-down", undrainAt.Sub(resolvedAt), drainHoldDown)
	}
	var kindsOfAction []string
	for _, a := range action.log {
		act, el, _ := strings.Cut(a, " ")
		if physical(el) != faultLink {
			t.Errorf("fabric action %q on another element than %s", a, faultLink)
		}
		kindsOfAction = append(kindsOfAction, act)
	}
	if want := []string{alert.ActionDrain, alert.ActionUndrain, alert.ActionDrain}; len(kindsOfAction) < 3 || !slices.Equal(kindsOfAction[:3], want) {
		t.Errorf("fabric actions %v, want %v first: the fault is still there after the undrain", action.log, want)
	}
	if len(incs) < 2 || incs[1].Blamed == nil || physical(incs[1].Blamed.Element) != faultLink || incs[1].Start.Before(undrainAt) {
		t.Errorf("want a second incident blaming %s after the undrain at +%s: %d incidents", link, undrainAt.Sub(base), len(incs))
	}
	// The drain-undrain cycle repeats until the hourly cap refuses a drain:
	// the cap, not the hold-down, is what stops the flapping.
	capped := false
	for _, d := range decisions {
		if d.Action == alert.ActionDrain && !d.Taken && strings.Contains(d.Reason, "actions in the last hour") {
			capped = true
		}
	}
	if !capped {
		t.Errorf("no drain refused by the hourly cap over %d drain/undrain actions", len(action.log))
	}
}
