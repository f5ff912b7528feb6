package alert

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/slo"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func cond(name string, scope *slo.Scope, forDur time.Duration) Condition {
	return Condition{Labels: map[string]string{"alertname": "X", "slo": name}, Annotations: map[string]string{"summary": name + " burns"}, Scope: scope, SLO: name, For: forDur, Value: 20}
}

func newManager(t *testing.T, cfg Config) *Manager {
	t.Helper()
	cfg.Registerer = prometheus.NewRegistry()
	m, err := NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLifecycle(t *testing.T) {
	rack := &slo.Scope{Rack: "dc1-pod1-rack1"}
	// Each step: minutes after t0, whether the condition holds; want the
	// alert's state after the step ("" = no alert).
	tests := []struct {
		name  string
		for_  time.Duration
		steps []struct {
			min   int
			holds bool
			want  State
		}
	}{
		{"fires at once without for", 0, []struct {
			min   int
			holds bool
			want  State
		}{{0, true, StateFiring}, {1, true, StateFiring}, {2, false, StateResolved}}},
		{"pending until for has passed", 2 * time.Minute, []struct {
			min   int
			holds bool
			want  State
		}{{0, true, StatePending}, {1, true, StatePending}, {2, true, StateFiring}, {3, false, StateResolved}}},
		{"pending that stops is dropped", 5 * time.Minute, []struct {
			min   int
			holds bool
			want  State
		}{{0, true, StatePending}, {1, false, ""}, {2, true, StatePending}}},
		{"fires again after resolving", 0, []struct {
			min   int
			holds bool
			want  State
		}{{0, true, StateFiring}, {1, false, StateResolved}, {2, true, StateFiring}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, Config{})
			for _, s := range tc.steps {
				var conds []Condition
				if s.holds {
					conds = []Condition{cond("a", rack, tc.for_)}
				}
				m.Observe(t0.Add(time.Duration(s.min)*time.Minute), conds)
				as := m.Alerts()
				var got State
				if len(as) > 0 {
					got = as[0].State
				}
				if len(as) > 1 {
					t.Fatalf("minute %d: %d alerts", s.min, len(as))
				}
				if got != s.want {
					t.Fatalf("minute %d: state %q, want %q", s.min, got, s.want)
				}
			}
		})
	}
}

func TestDeduplicate(t *testing.T) {
	m := newManager(t, Config{})
	c := cond("a", nil, 0)
	m.Observe(t0, []Condition{c, c, {Labels: map[string]string{"slo": "no-name"}}})
	// No annotations and a culprit to note on them: no crash.
	b := newManager(t, Config{Blamer: BlamerFunc(func(*slo.Scope, time.Time) (Culprit, bool) { return Culprit{Element: "dc1-spine1"}, true })})
	b.Observe(t0, []Condition{{Labels: map[string]string{"alertname": "bare"}}})
	if got := b.Alerts()[0].Annotations["blamed_element"]; got != "dc1-spine1" {
		t.Errorf("blamed_element = %q", got)
	}
	if n := len(m.Alerts()); n != 1 {
		t.Fatalf("%d alerts, want 1", n)
	}
	if n := len(m.Incidents()); n != 1 {
		t.Fatalf("%d incidents, want 1", n)
	}
}

func TestIncidentGrouping(t *testing.T) {
	pod := &slo.Scope{Pod: "dc1-pod1"}
	rack := &slo.Scope{Rack: "dc1-pod1-rack3"}
	other := &slo.Scope{Rack: "dc1-pod2-rack1"}
	host := &slo.Scope{Host: "dc1-pod1-rack3-h07"}
	type obs struct {
		min   int
		conds []Condition
	}
	tests := []struct {
		name      string
		blame     map[string]string // scope element -> culprit element
		steps     []obs
		incidents int
	}{
		{"overlapping scopes together", nil, []obs{
			{0, []Condition{cond("pod", pod, 0)}},
			{2, []Condition{cond("pod", pod, 0), cond("rack", rack, 0), cond("host", host, 0)}},
		}, 1},
		{"disjoint scopes apart", nil, []obs{
			{0, []Condition{cond("pod", pod, 0), cond("other", other, 0)}},
		}, 2},
		{"overlap but long after", nil, []obs{
			{0, []Condition{cond("pod", pod, 0)}},
			{1, nil},
			{30, []Condition{cond("rack", rack, 0)}},
		}, 2},
		{"same culprit though disjoint", map[string]string{"dc1-pod1": "dc1-spine2", "dc1-pod2-rack1": "dc1-spine2"}, []obs{
			{0, []Condition{cond("pod", pod, 0)}},
			{3, []Condition{cond("pod", pod, 0), cond("other", other, 0)}},
		}, 1},
		{"tiers of one unlocated SLO together", nil, []obs{
			{0, []Condition{cond("svc1", nil, 0), {Labels: map[string]string{"alertname": "X", "slo": "svc1", "tier": "slow"}, SLO: "svc1"}}},
		}, 1},
		{"no location never overlaps", nil, []obs{
			{0, []Condition{cond("svc1", nil, 0), cond("svc2", nil, 0)}},
		}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b Blamer
			if tc.blame != nil {
				b = BlamerFunc(func(s *slo.Scope, at time.Time) (Culprit, bool) {
					e, ok := tc.blame[scopeElement(s)]
					return Culprit{Element: e, Kind: "device", Confidence: 0.9}, ok
				})
			}
			m := newManager(t, Config{Blamer: b})
			for _, s := range tc.steps {
				m.Observe(t0.Add(time.Duration(s.min)*time.Minute), s.conds)
			}
			if got := len(m.Incidents()); got != tc.incidents {
				for _, inc := range m.Incidents() {
					t.Logf("%s: %v", inc.ID, inc.Alerts)
				}
				t.Fatalf("%d incidents, want %d", got, tc.incidents)
			}
		})
	}
}

func TestIncidentTimeline(t *testing.T) {
	board := NewBoard(0.5, 10*time.Minute)
	m := newManager(t, Config{Blamer: board})
	rack := &slo.Scope{Rack: "dc1-pod1-rack3"}
	burn := func(b float64) *float64 { return &b }
	status := func(at time.Time, firing bool, budget float64) []slo.Status {
		return []slo.Status{{Name: "rack3", Scope: rack, Runbook: "https://rb.example/x", BudgetRemaining: burn(budget),
			Tiers: []slo.TierStatus{{Name: "page-1h", Severity: "page", Factor: 14.4, Long: "1h", Short: "5m", Firing: firing, LongBurn: burn(30), ShortBurn: burn(40)}}}}
	}
	m.ObserveSLOs(t0.Add(-2*time.Minute), status(t0, false, 0.95)) // the short window burns first
	m.ObserveSLOs(t0, status(t0, true, 0.9))                       // detection: nothing blamed yet
	board.Update([]Culprit{
		{Element: "dc1-pod2-leaf1--dc1-spine1", Kind: "link", Confidence: 0.99, At: t0.Add(time.Minute)}, // elsewhere
		{Element: "dc1-pod1-rack3-tor--dc1-pod1-leaf2", Kind: "link", Symptom: "loss", Estimate: 0.02, Confidence: 0.95, Evidence: "412 lost probes", Pairs: []string{"dc1-pod1-rack3-h01 -> dc1-pod1-rack1-h02"}, At: t0.Add(time.Minute)},
	})
	m.ObserveSLOs(t0.Add(time.Minute), status(t0, true, 0.8))
	if err := m.Mitigate(m.Incidents()[0].ID, t0.Add(2*time.Minute), "drained dc1-pod1-rack3-tor--dc1-pod1-leaf2"); err != nil {
		t.Fatal(err)
	}
	m.ObserveSLOs(t0.Add(3*time.Minute), status(t0, true, 0.75))
	m.ObserveSLOs(t0.Add(4*time.Minute), status(t0, false, 0.75))

	incs := m.Incidents()
	if len(incs) != 1 {
		t.Fatalf("%d incidents", len(incs))
	}
	inc := incs[0]
	var kinds []string
	for _, e := range inc.Timeline {
		kinds = append(kinds, e.Kind)
	}
	want := "first_symptom,detection,localization,mitigation,alert_resolved,resolution"
	if strings.Join(kinds, ",") != want {
		t.Errorf("timeline %v, want %s", kinds, want)
	}
	if !inc.Start.Equal(t0.Add(-2*time.Minute)) || !inc.Timeline[0].At.Equal(inc.Start) || !inc.Detected.Equal(t0) {
		t.Errorf("start %v (first event %v), detected %v", inc.Start, inc.Timeline[0].At, inc.Detected)
	}
	if inc.State != IncidentResolved || !inc.End.Equal(t0.Add(4*time.Minute)) {
		t.Errorf("state %s end %v", inc.State, inc.End)
	}
	if inc.Blamed == nil || inc.Blamed.Element != "dc1-pod1-rack3-tor--dc1-pod1-leaf2" || len(inc.AffectedPairs) != 1 {
		t.Errorf("blamed %+v pairs %v", inc.Blamed, inc.AffectedPairs)
	}
	if len(inc.SLOs) != 1 || inc.SLOs[0].Consumed < 0.149 || inc.SLOs[0].Consumed > 0.151 || inc.SLOs[0].PeakBurnRate != 30 {
		t.Errorf("slo burn %+v", inc.SLOs)
	}
	a := m.Alerts()[0]
	if a.Annotations["blamed_element"] != inc.Blamed.Element || a.Annotations["runbook_url"] != "https://rb.example/x" || a.Annotations["scope"] != "rack=dc1-pod1-rack3" {
		t.Errorf("annotations %v", a.Annotations)
	}
	if _, ok := m.Incident(inc.ID); !ok {
		t.Error("Incident(id) not found")
	}
	if err := m.Mitigate("nope", t0, "x"); err == nil {
		t.Error("mitigating an unknown incident should fail")
	}
}

// TestIncidentFollowsTheLocalizer: the localizer's first verdict on a
// fault is its least informed (a lossy ToR's first window can read as one
// of its uplinks). An incident keeps a culprit the localizer still names
// now and then, and takes the localizer's new answer once the old one has
// gone stale, saying so in its timeline.
func TestIncidentFollowsTheLocalizer(t *testing.T) {
	const uplink, tor = "dc1-pod1-rack3-tor--dc1-pod1-leaf2", "dc1-pod1-rack3-tor"
	board := NewBoard(0.5, 30*time.Second)
	m := newManager(t, Config{Blamer: board})
	rack := &slo.Scope{Rack: "dc1-pod1-rack3"}
	burn := func(b float64) *float64 { return &b }
	status := []slo.Status{{Name: "rack3", Scope: rack, BudgetRemaining: burn(0.9),
		Tiers: []slo.TierStatus{{Name: "fast", Severity: "page", Factor: 14.4, Long: "1m", Short: "20s", Firing: true, LongBurn: burn(30), ShortBurn: burn(40)}}}}
	verdict := func(at time.Time, names ...string) {
		var cs []Culprit
		for _, n := range names {
			cs = append(cs, Culprit{Element: n, Kind: "x", Confidence: 0.99, At: at})
		}
		board.Update(cs)
	}
	blamed := func() string {
		inc := m.Incidents()[0]
		if inc.Blamed == nil {
			return ""
		}
		return inc.Blamed.Element
	}
	step := 10 * time.Second
	at := t0
	verdict(at, uplink)
	m.ObserveSLOs(at, status)
	if got := blamed(); got != uplink {
		t.Fatalf("blamed %q at detection, want %q", got, uplink)
	}
	// The uplink is named every other window, beside the ToR: it stays.
	for i := range 6 {
		at = at.Add(step)
		if i%2 == 0 {
			verdict(at, tor, uplink)
		} else {
			verdict(at, tor)
		}
		m.ObserveSLOs(at, status)
		if got := blamed(); got != uplink {
			t.Fatalf("window %d: blamed %q, want %q kept while it is still named", i, got, uplink)
		}
	}
	// Then only the ToR: once the uplink is more than MaxAge old, the
	// incident blames the ToR.
	var switched time.Duration
	for i := range 8 {
		at = at.Add(step)
		verdict(at, tor)
		m.ObserveSLOs(at, status)
		if blamed() == tor {
			switched = time.Duration(i+1) * step
			break
		}
	}
	if switched == 0 || switched > 40*time.Second {
		t.Fatalf("blamed %q after the uplink went unnamed for 80s, want %q within MaxAge and a window", blamed(), tor)
	}
	var events []string
	for _, e := range m.Incidents()[0].Timeline {
		if e.Kind == EventLocalization {
			events = append(events, e.Detail)
		}
	}
	if len(events) != 3 || !strings.Contains(events[0], uplink) || !strings.Contains(events[1], "no longer names "+uplink) || !strings.Contains(events[2], "blamed x "+tor) {
		t.Errorf("localization events %q", events)
	}
	if a := m.Alerts()[0]; a.Annotations["blamed_element"] != tor {
		t.Errorf("the alert says blamed_element=%q", a.Annotations["blamed_element"])
	}
}

// TestIncidentKeepsItsCulprit: the localizer's silence is no reason to
// revise a culprit that was mitigated (a drained link stops losing probes
// because the drain worked) or to narrow a link to one of its directions.
func TestIncidentKeepsItsCulprit(t *testing.T) {
	const link = "dc1-pod1-rack3-tor--dc1-pod1-leaf1"
	for _, tc := range []struct {
		name     string
		later    string // all the localizer names after detection
		mitigate bool
	}{
		{"mitigated", "dc1-pod1-rack3-tor", true},
		{"a direction of it", "dc1-pod1-leaf1->dc1-pod1-rack3-tor", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			board := NewBoard(0.5, 30*time.Second)
			m := newManager(t, Config{Blamer: board})
			burn := func(b float64) *float64 { return &b }
			status := []slo.Status{{Name: "rack3", Scope: &slo.Scope{Rack: "dc1-pod1-rack3"}, BudgetRemaining: burn(0.9),
				Tiers: []slo.TierStatus{{Name: "fast", Severity: "page", Factor: 14.4, Long: "1m", Short: "20s", Firing: true, LongBurn: burn(30), ShortBurn: burn(40)}}}}
			at := t0
			board.Update([]Culprit{{Element: link, Kind: "link", Confidence: 0.9, At: at}})
			m.ObserveSLOs(at, status)
			if tc.mitigate {
				if err := m.Mitigate(m.Incidents()[0].ID, at, "drained "+link); err != nil {
					t.Fatal(err)
				}
			}
			for range 12 {
				at = at.Add(10 * time.Second)
				board.Update([]Culprit{{Element: tc.later, Kind: "x", Confidence: 0.99, At: at}})
				m.ObserveSLOs(at, status)
			}
			if inc := m.Incidents()[0]; inc.Blamed == nil || inc.Blamed.Element != link {
				t.Errorf("blamed %+v, want %s kept", inc.Blamed, link)
			}
		})
	}
}

func TestContains(t *testing.T) {
	for _, tc := range []struct {
		outer, inner string
		want         bool
	}{
		{"a--b", "a--b", true},
		{"a--b", "a->b", true},
		{"a--b", "b->a", true},
		{"a->b", "b->a", false},
		{"a--b", "a--c", false},
		{"a", "a--b", true},
		{"b", "a->b", true},
		{"a", "ab--c", false},
		{"a--b", "a", false},
	} {
		if got := contains(tc.outer, tc.inner); got != tc.want {
			t.Errorf("contains(%q, %q) = %v, want %v", tc.outer, tc.inner, got, tc.want)
		}
	}
}

// recorder is a webhook endpoint on a real loopback socket.
type recorder struct {
	mu       sync.Mutex
	fail     int // answer 503 to this many requests first
	bodies   [][]byte
	sigs     []string
	attempts int
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts++
	if r.fail > 0 {
		r.fail--
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	r.bodies = append(r.bodies, b)
	r.sigs = append(r.sigs, req.Header.Get(SignatureHeader))
}

func TestWebhookSignedWithRetries(t *testing.T) {
	rec := &recorder{fail: 2}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	secret := []byte("s3cret")
	wh, err := NewWebhook("ops", srv.URL+"/hook", secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	wh.MinBackoff = time.Millisecond
	m := newManager(t, Config{Receivers: []Receiver{wh}, Clock: clock.NewVirtual(t0)})
	m.Observe(t0, []Condition{cond("a", &slo.Scope{DC: "dc1"}, 0)})
	if err := m.Deliver(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	// Nothing changed: a webhook hears nothing more, even on a repeat round.
	if err := m.Deliver(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	m.Observe(t0.Add(time.Minute), nil)
	if err := m.Deliver(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.attempts != 4 || len(rec.bodies) != 2 {
		t.Fatalf("attempts %d, delivered %d; want 4 and 2", rec.attempts, len(rec.bodies))
	}
	for i, b := range rec.bodies {
		if !VerifySignature(secret, b, rec.sigs[i]) {
			t.Errorf("body %d: bad signature %q", i, rec.sigs[i])
		}
		var p WebhookPayload
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		want := []string{"firing", "resolved"}[i]
		if p.Status != want || len(p.Alerts) != 1 || p.Incident == nil || p.GroupKey != p.Incident.ID {
			t.Errorf("body %d: status %s alerts %d incident %v", i, p.Status, len(p.Alerts), p.Incident)
		}
	}
	if VerifySignature([]byte("wrong"), rec.bodies[0], rec.sigs[0]) {
		t.Error("signature verified with the wrong secret")
	}
}

func TestWebhookGivesUpOn4xx(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", http.StatusBadRequest) }))
	defer srv.Close()
	wh, err := NewWebhook("bad", srv.URL, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := newManager(t, Config{Receivers: []Receiver{wh}, Clock: clock.NewVirtual(t0)})
	m.Observe(t0, []Condition{cond("a", nil, 0)})
	if err := m.Deliver(context.Background(), false); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("want a 400 error, got %v", err)
	}
	// Still dirty: retried next round.
	if err := m.Deliver(context.Background(), false); err == nil {
		t.Fatal("failed delivery was not retried")
	}
}

func TestAlertmanagerPayload(t *testing.T) {
	var mu sync.Mutex
	var got [][]postableAlert
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v2/alerts" || r.Method != http.MethodPost {
			http.Error(w, "wrong endpoint", http.StatusNotFound)
			return
		}
		var p []postableAlert
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
	}))
	defer srv.Close()
	am, err := NewAlertmanager("am", srv.URL, "http://meshlens/slo", nil)
	if err != nil {
		t.Fatal(err)
	}
	vc := clock.NewVirtual(t0)
	m := newManager(t, Config{Receivers: []Receiver{am}, Clock: vc, ResendInterval: time.Minute})
	m.Observe(t0, []Condition{cond("a", nil, 0)})
	ctx := context.Background()
	if err := m.Deliver(ctx, false); err != nil {
		t.Fatal(err)
	}
	vc.Advance(time.Minute)
	if err := m.Deliver(ctx, true); err != nil { // repeat: re-sent with a later endsAt
		t.Fatal(err)
	}
	vc.Advance(30 * time.Second)
	m.Observe(vc.Now(), nil)
	if err := m.Deliver(ctx, false); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("%d posts, want 3", len(got))
	}
	ends := []time.Time{t0.Add(4 * time.Minute), t0.Add(5 * time.Minute), t0.Add(90 * time.Second)}
	for i, p := range got {
		if len(p) != 1 || !p[0].EndsAt.Equal(ends[i]) || !p[0].StartsAt.Equal(t0) || p[0].Labels["alertname"] != "X" || p[0].Annotations["incident"] == "" {
			t.Errorf("post %d: %+v, want endsAt %v", i, p, ends[i])
		}
	}
}

func TestRunStops(t *testing.T) {
	m := newManager(t, Config{Clock: clock.NewVirtual(t0)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	m.Observe(t0, []Condition{cond("a", nil, 0)})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestBoard(t *testing.T) {
	b := NewBoard(0.5, 5*time.Minute)
	b.Update([]Culprit{
		{Element: "dc1-spine3", Confidence: 0.9, At: t0},
		{Element: "dc1-pod1-rack2-tor->dc1-pod1-leaf1", Confidence: 0.7, At: t0},
		{Element: "dc1-pod4-rack1-h01", Confidence: 0.3, At: t0},
	})
	tests := []struct {
		scope *slo.Scope
		at    time.Time
		want  string
	}{
		{&slo.Scope{Rack: "dc1-pod1-rack2"}, t0, "dc1-pod1-rack2-tor->dc1-pod1-leaf1"},
		{&slo.Scope{Pod: "dc1-pod3"}, t0, "dc1-spine3"},            // nothing in the pod: the DC's suspect
		{&slo.Scope{Host: "dc1-pod4-rack1-h01"}, t0, "dc1-spine3"}, // the host's own suspect is not confident
		{&slo.Scope{DC: "dc2"}, t0, ""},
		{nil, t0, "dc1-spine3"},
		{&slo.Scope{Rack: "dc1-pod1-rack2"}, t0.Add(10 * time.Minute), ""}, // stale
	}
	for _, tc := range tests {
		c, ok := b.Blame(tc.scope, tc.at)
		if c.Element != tc.want || ok != (tc.want != "") {
			t.Errorf("Blame(%+v) = %q, %v; want %q", tc.scope, c.Element, ok, tc.want)
		}
	}
}

// TestAcknowledge: an operator takes an open incident on once; the
// acknowledgement is on the incident and its timeline. A second one, one
// on a resolved incident, an unknown id or an oversized comment is refused.
func TestAcknowledge(t *testing.T) {
	m := newManager(t, Config{})
	rack := &slo.Scope{Rack: "dc1-pod1-rack3"}
	status := func(firing bool) []slo.Status {
		return []slo.Status{{Name: "rack3", Scope: rack,
			Tiers: []slo.TierStatus{{Name: "page-1h", Severity: "page", Factor: 14.4, Long: "1h", Short: "5m", Firing: firing}}}}
	}
	m.ObserveSLOs(t0, status(true))
	id := m.Incidents()[0].ID
	if _, err := m.Acknowledge(id, "alice", strings.Repeat("x", MaxAckComment+1), t0); err == nil {
		t.Error("oversized comment accepted")
	}
	inc, err := m.Acknowledge(id, "alice", "looking at the ToR", t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if inc.Acknowledged == nil || inc.Acknowledged.By != "alice" || inc.Acknowledged.Comment != "looking at the ToR" {
		t.Fatalf("acknowledged = %+v", inc.Acknowledged)
	}
	last := inc.Timeline[len(inc.Timeline)-1]
	if last.Kind != EventAcknowledged || !strings.Contains(last.Detail, "alice: looking at the ToR") {
		t.Errorf("timeline ends with %+v", last)
	}
	if got, _ := m.Incident(id); got.Acknowledged == nil {
		t.Error("acknowledgement not kept")
	}
	if _, err := m.Acknowledge(id, "bob", "", t0.Add(2*time.Minute)); !errors.Is(err, ErrAlreadyAcked) {
		t.Errorf("second ack: %v, want ErrAlreadyAcked", err)
	}
	if _, err := m.Acknowledge("nope", "bob", "", t0); !errors.Is(err, ErrNoIncident) {
		t.Errorf("unknown incident: %v, want ErrNoIncident", err)
	}
	m.ObserveSLOs(t0.Add(3*time.Minute), status(false))
	m2 := newManager(t, Config{})
	m2.ObserveSLOs(t0, status(true))
	m2.ObserveSLOs(t0.Add(time.Minute), status(false))
	if _, err := m2.Acknowledge(m2.Incidents()[0].ID, "bob", "", t0.Add(2*time.Minute)); !errors.Is(err, ErrIncidentResolved) {
		t.Errorf("resolved incident: %v, want ErrIncidentResolved", err)
	}
}

// An imported SLO's tier alerts under its tool's name, with its routing
// labels and annotations, so existing Alertmanager routes keep working;
// meshlens's own labels win over them, the tier's over the SLO's.
func TestImportedTierKeepsItsRoutes(t *testing.T) {
	m := newManager(t, Config{})
	m.ObserveSLOs(t0, []slo.Status{{Name: "payments-charges", Labels: map[string]string{"team": "payments", "channel": "slo"},
		Tiers: []slo.TierStatus{{Name: "page-1h", Severity: "pageteam", Factor: 14.4, Long: "1h", Short: "5m", Firing: true,
			Alert: "PaymentsChargeErrors", Labels: map[string]string{"routing_key": "pay", "channel": "tier", "slo": "nope"}, Annotations: map[string]string{"runbook": "https://rb.example/pay"}}}}})
	als := m.Alerts()
	if len(als) != 1 {
		t.Fatalf("%d alerts", len(als))
	}
	want := map[string]string{"alertname": "PaymentsChargeErrors", "slo": "payments-charges", "tier": "page-1h", "severity": "pageteam", "routing_key": "pay", "channel": "tier", "team": "payments"}
	for k, v := range want {
		if als[0].Labels[k] != v {
			t.Errorf("label %s = %q, want %q (all: %v)", k, als[0].Labels[k], v, als[0].Labels)
		}
	}
	if als[0].Annotations["runbook"] != "https://rb.example/pay" {
		t.Errorf("annotations %v", als[0].Annotations)
	}
}
