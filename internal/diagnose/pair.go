package diagnose

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/meshlens/meshlens/internal/topology"
)

// Thresholds of the verdicts. A pair is degraded when its recent loss is
// at least MinLoss, three times its baseline, and at least MinLost probes;
// or when its p99 doubled and grew by MinLatencyGrowth. A host is sick when
// it loses at least MinSickLoss of its probes and SickFactor times its
// rack's share (the host's own ratio is a mean over windows with few probes
// each, so it takes a clear signal, and the rack's share must be known).
const (
	MinLoss          = 0.001
	MinSickLoss      = 0.01
	MinLost          = 3
	MinLatencyGrowth = 200 * time.Microsecond
	SickFactor       = 4
	// MinProbes below which a pair alone is too thin to call healthy.
	MinProbes = 100
	// RecentSpan is the "now" of a diagnosis; the rest of --since is the
	// baseline.
	RecentSpan = 5 * time.Minute
)

// Causes of a pair verdict.
const (
	CauseHealthy = "healthy"
	CauseNetwork = "network"
	CauseHost    = "host"
	CauseUnknown = "unknown"
	// CausePeerDown: the destination's agent is not delivering and its
	// probes are lost: the host is gone, not the network.
	CausePeerDown = "peer_down"
)

// Stats summarize a pair's windows. Ratios and latencies are nil without
// probes.
type Stats struct {
	Windows   int      `json:"windows"`
	Sent      uint64   `json:"sent"`
	Lost      uint64   `json:"lost"`
	LossRatio *float64 `json:"loss_ratio"`
	// P50 and P99 are the sent-weighted means of the windows' quantiles
	// (seconds).
	P50 *float64 `json:"p50_seconds"`
	P99 *float64 `json:"p99_seconds"`
}

func summarize(ws []PairWindow, from, to time.Time) Stats {
	var s Stats
	var p50, p99, weight float64
	for _, w := range ws {
		if w.End.Before(from) || w.End.After(to) || (w.End.Equal(from) && !from.Equal(to)) {
			continue
		}
		s.Windows++
		s.Sent += w.Sent
		s.Lost += w.Lost
		if ok := w.Sent - min(w.Lost, w.Sent); ok > 0 && w.P99 > 0 {
			p50 += w.P50 * float64(ok)
			p99 += w.P99 * float64(ok)
			weight += float64(ok)
		}
	}
	if s.Sent > 0 {
		s.LossRatio = num(float64(s.Lost) / float64(s.Sent))
	}
	if weight > 0 {
		s.P50, s.P99 = num(p50/weight), num(p99/weight)
	}
	return s
}

func num(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}

func val(f *float64) float64 {
	if f == nil {
		return 0
	}
	return *f
}

// HostHealth is one end of a pair.
type HostHealth struct {
	Host string `json:"host"`
	Rack string `json:"rack"`
	// LossOut and LossIn: share of the probes the host sent / received
	// that were lost, recently (mean of window ratios).
	LossOut *float64 `json:"loss_out"`
	LossIn  *float64 `json:"loss_in"`
	// RackLossOut and RackLossIn: the same for the whole rack.
	RackLossOut *float64 `json:"rack_loss_out"`
	RackLossIn  *float64 `json:"rack_loss_in"`
	Sick        bool     `json:"sick"`
	Why         string   `json:"why,omitempty"`
}

// PathSuspect is a blamed element on one of the pair's ECMP paths.
type PathSuspect struct {
	Suspect
	// Paths is how many of the pair's paths cross it.
	Paths int `json:"paths"`
}

// PairReport answers "is it the network?" for one pair.
type PairReport struct {
	Src      string    `json:"src"`
	Dst      string    `json:"dst"`
	SrcRack  string    `json:"src_rack"`
	DstRack  string    `json:"dst_rack"`
	SrcPod   string    `json:"src_pod"`
	DstPod   string    `json:"dst_pod"`
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
	Recent   Stats     `json:"recent"`
	Baseline Stats     `json:"baseline"`
	Reverse  Stats     `json:"reverse_recent"`
	// RackPairLoss and PodPairLoss: the recent loss of every probe from
	// the source's rack (pod) to the destination's.
	RackPairLoss *float64   `json:"rack_pair_loss"`
	PodPairLoss  *float64   `json:"pod_pair_loss"`
	SrcHost      HostHealth `json:"src_host"`
	DstHost      HostHealth `json:"dst_host"`
	// DstAgent is the destination agent's state (up, stale, missing; ""
	// when the server lists no agents).
	DstAgent string        `json:"dst_agent_state,omitempty"`
	Paths    int           `json:"paths"`
	Elements []string      `json:"elements"`
	OnPath   []PathSuspect `json:"suspects_on_path"`
	Degraded bool          `json:"degraded"`
	Cause    string        `json:"cause"`
	Verdict  string        `json:"verdict"`
	Evidence []string      `json:"evidence"`
	// Detail is what the server holds of the pair's windows (nil from a
	// server that does not say): with a memory budget, only the windows
	// from Detail.CompleteFrom are summarized, as those before hold the
	// pair only where it lost probes (or was sampled).
	Detail *PairDetail `json:"pair_detail,omitempty"`
}

func lossQuery(level, side, name string, span time.Duration) string {
	r := "[" + strconv.Itoa(int(span.Seconds())) + "s]"
	sel := fmt.Sprintf(`{%s_%s=%q}`, side, level, name)
	return fmt.Sprintf("sum(increase(meshlens_%s_pair_probes_lost_total%s%s)) / sum(increase(meshlens_%s_pair_probes_total%s%s))", level, sel, r, level, sel, r)
}

func pairLossQuery(level, src, dst string, span time.Duration) string {
	r := "[" + strconv.Itoa(int(span.Seconds())) + "s]"
	sel := fmt.Sprintf(`{src_%s=%q,dst_%s=%q}`, level, src, level, dst)
	return fmt.Sprintf("sum(increase(meshlens_%s_pair_probes_lost_total%s%s)) / sum(increase(meshlens_%s_pair_probes_total%s%s))", level, sel, r, level, sel, r)
}

func hostLossQuery(host, dir string, span time.Duration) string {
	return fmt.Sprintf(`avg_over_time(meshlens_host_loss_ratio{host=%q,direction=%q}[%ds])`, host, dir, int(span.Seconds()))
}

// Pair diagnoses src→dst over [now-since, now].
func Pair(ctx context.Context, c *Client, src, dst string, since time.Duration, now time.Time) (*PairReport, error) {
	topo, err := c.Topology(ctx)
	if err != nil {
		return nil, err
	}
	hs, hd := topo.Host(src), topo.Host(dst)
	if hs == nil || hd == nil || src == dst {
		return nil, fmt.Errorf("diagnose: pair %s -> %s: want two different hosts of the topology", src, dst)
	}
	if since < 2*RecentSpan {
		since = 2 * RecentSpan
	}
	r := &PairReport{Src: src, Dst: dst, SrcRack: hs.Rack, DstRack: hd.Rack, SrcPod: hs.Pod, DstPod: hd.Pod, Since: now.Add(-since), Until: now}
	recentFrom := now.Add(-RecentSpan)
	fwd, detail, err := c.Pairs(ctx, src, dst, r.Since, now)
	if err != nil {
		return nil, err
	}
	rev, revDetail, err := c.Pairs(ctx, dst, src, recentFrom, now)
	if err != nil {
		return nil, err
	}
	r.Detail = detail
	fwd, rev = completeWindows(fwd, detail), completeWindows(rev, revDetail)
	r.Recent = summarize(fwd, recentFrom, now)
	r.Baseline = summarize(fwd, r.Since, recentFrom)
	r.Reverse = summarize(rev, recentFrom, now)

	scalar := func(q string) (*float64, error) {
		v, err := c.Scalar(ctx, q, now)
		if err != nil {
			return nil, err
		}
		return num(v), nil
	}
	if r.RackPairLoss, err = scalar(pairLossQuery("rack", hs.Rack, hd.Rack, RecentSpan)); err != nil {
		return nil, err
	}
	if r.PodPairLoss, err = scalar(pairLossQuery("pod", hs.Pod, hd.Pod, RecentSpan)); err != nil {
		return nil, err
	}
	for _, h := range []struct {
		out  *HostHealth
		host *topology.Host
	}{{&r.SrcHost, hs}, {&r.DstHost, hd}} {
		if *h.out, err = hostHealth(ctx, c, h.host.Name, h.host.Rack, now); err != nil {
			return nil, err
		}
	}

	// The server may list no agents (an API without them): then the
	// diagnosis goes without.
	if agents, err := c.Agents(ctx); err == nil {
		for _, a := range agents {
			if a.Host == dst {
				r.DstAgent = a.State
			}
		}
	}
	paths := topo.Paths(src, dst)
	r.Paths = len(paths)
	suspects, err := c.Suspects(ctx)
	if err != nil {
		return nil, err
	}
	r.Elements, r.OnPath = onPaths(paths, suspects)
	r.judge()
	return r, nil
}

// completeWindows drops the windows before the span where the server holds
// every window of the pair: those the memory budget kept only because the
// pair lost probes there (or was sampled) would skew its loss.
func completeWindows(ws []PairWindow, d *PairDetail) []PairWindow {
	if d == nil || d.Mode != DetailBudget || d.CompleteFrom == nil {
		return ws
	}
	var out []PairWindow
	for _, w := range ws {
		if !w.Start.Before(*d.CompleteFrom) {
			out = append(out, w)
		}
	}
	return out
}

func hostHealth(ctx context.Context, c *Client, host, rack string, now time.Time) (HostHealth, error) {
	h := HostHealth{Host: host, Rack: rack}
	for _, q := range []struct {
		dst  **float64
		expr string
	}{
		{&h.LossOut, hostLossQuery(host, "out", RecentSpan)},
		{&h.LossIn, hostLossQuery(host, "in", RecentSpan)},
		{&h.RackLossOut, lossQuery("rack", "src", rack, RecentSpan)},
		{&h.RackLossIn, lossQuery("rack", "dst", rack, RecentSpan)},
	} {
		v, err := c.Scalar(ctx, q.expr, now)
		if err != nil {
			return h, err
		}
		*q.dst = num(v)
	}
	sick := func(host, rack *float64) bool {
		return host != nil && rack != nil && *host >= MinSickLoss && *host >= SickFactor**rack
	}
	switch {
	case sick(h.LossOut, h.RackLossOut):
		h.Sick, h.Why = true, fmt.Sprintf("loses %s of the probes it sends while its rack loses %s", pct(h.LossOut), pct(h.RackLossOut))
	case sick(h.LossIn, h.RackLossIn):
		h.Sick, h.Why = true, fmt.Sprintf("loses %s of the probes sent to it while its rack loses %s", pct(h.LossIn), pct(h.RackLossIn))
	}
	return h, nil
}

// onPaths lists the elements (switches and links) of the paths and the
// suspects among them.
func onPaths(paths []topology.Path, suspects []Suspect) ([]string, []PathSuspect) {
	count := map[string]int{}
	var order []string
	add := func(name string) {
		if count[name] == 0 {
			order = append(order, name)
		}
		count[name]++
	}
	for _, p := range paths {
		for i, e := range p {
			if i > 0 && i < len(p)-1 {
				add(e)
			}
		}
		for _, l := range p.Links() {
			add(l.Name())
		}
	}
	var out []PathSuspect
	for _, s := range suspects {
		n := 0
		switch {
		case strings.Contains(s.Element, "->"):
			n = count[s.Element]
		case strings.Contains(s.Element, "--"):
			a, b, _ := strings.Cut(s.Element, "--")
			n = count[a+"->"+b] + count[b+"->"+a]
		default:
			n = count[s.Element]
		}
		if n > 0 {
			out = append(out, PathSuspect{Suspect: s, Paths: min(n, len(paths))})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Confidence > out[j].Confidence })
	var elements []string
	for _, e := range order {
		if !strings.Contains(e, "->") {
			elements = append(elements, e)
		}
	}
	return elements, out
}

func pct(f *float64) string {
	if f == nil {
		return "n/a"
	}
	return strconv.FormatFloat(*f*100, 'g', 3, 64) + "%"
}

func dur(f *float64) string {
	if f == nil {
		return "n/a"
	}
	return time.Duration(*f * float64(time.Second)).Round(time.Microsecond).String()
}

// judge sets Degraded, Cause, Verdict and Evidence.
func (r *PairReport) judge() {
	rl, bl := val(r.Recent.LossRatio), val(r.Baseline.LossRatio)
	lossBad := r.Recent.LossRatio != nil && rl >= MinLoss && rl >= 3*bl && r.Recent.Lost >= MinLost
	latBad := r.Recent.P99 != nil && r.Baseline.P99 != nil && *r.Recent.P99 > 2**r.Baseline.P99 &&
		time.Duration((*r.Recent.P99-*r.Baseline.P99)*float64(time.Second)) >= MinLatencyGrowth
	r.Degraded = lossBad || latBad
	ev := func(format string, args ...any) { r.Evidence = append(r.Evidence, fmt.Sprintf(format, args...)) }
	ev("%s -> %s: loss %s of %d probes in the last %s (baseline %s of %d); p99 %s (baseline %s)",
		r.Src, r.Dst, pct(r.Recent.LossRatio), r.Recent.Sent, RecentSpan, pct(r.Baseline.LossRatio), r.Baseline.Sent, dur(r.Recent.P99), dur(r.Baseline.P99))
	ev("reverse %s -> %s: loss %s of %d probes", r.Dst, r.Src, pct(r.Reverse.LossRatio), r.Reverse.Sent)
	ev("rack pair %s -> %s: loss %s; pod pair %s -> %s: loss %s", r.SrcRack, r.DstRack, pct(r.RackPairLoss), r.SrcPod, r.DstPod, pct(r.PodPairLoss))
	for _, h := range []HostHealth{r.SrcHost, r.DstHost} {
		ev("host %s: loss out %s, in %s; its rack %s: out %s, in %s", h.Host, pct(h.LossOut), pct(h.LossIn), h.Rack, pct(h.RackLossOut), pct(h.RackLossIn))
	}
	if r.DstAgent != "" {
		ev("agent of %s: %s", r.Dst, r.DstAgent)
	}
	for _, s := range r.OnPath {
		ev("suspect on %d of %d paths: %s %s (%s, estimate %.3g, confidence %.0f%%)", s.Paths, r.Paths, s.Kind, s.Element, s.Symptom, s.Estimate, s.Confidence*100)
	}
	what := "loss " + pct(r.Recent.LossRatio) + " against a baseline of " + pct(r.Baseline.LossRatio)
	if latBad && !lossBad {
		what = "p99 " + dur(r.Recent.P99) + " against a baseline of " + dur(r.Baseline.P99)
	}
	rack := fmt.Sprintf("Its rack pair %s -> %s loses %s and its pod pair %s -> %s %s.", r.SrcRack, r.DstRack, pct(r.RackPairLoss), r.SrcPod, r.DstPod, pct(r.PodPairLoss))
	switch {
	case r.Recent.Sent == 0 && r.Detail != nil && r.Detail.Mode == DetailOff:
		r.Cause = CauseUnknown
		r.Verdict = fmt.Sprintf("This server keeps no pair windows (pair detail is off: rollups-only aggregation), so %s -> %s cannot be judged alone. %s", r.Src, r.Dst, rack)
	case r.Recent.Sent == 0 && r.Detail != nil && r.Detail.Mode == DetailBudget && r.Detail.CompleteFrom != nil && r.Detail.CompleteFrom.After(r.recentStart()):
		r.Cause = CauseUnknown
		r.Verdict = fmt.Sprintf("The server's memory budget trimmed the detail of %s -> %s before %s, so the pair cannot be judged alone over the last %s. %s",
			r.Src, r.Dst, r.Detail.CompleteFrom.UTC().Format(time.RFC3339), RecentSpan, rack)
	case r.Recent.Sent == 0:
		r.Cause = CauseUnknown
		r.Verdict = fmt.Sprintf("No probes from %s to %s in the last %s: either the pair is not in %s's pinglist or its agent is not reporting (see meshlens diagnose host %s).", r.Src, r.Dst, RecentSpan, r.Src, r.Src)
	case !r.Degraded && r.Recent.Sent < MinProbes:
		r.Cause = CauseUnknown
		r.Verdict = fmt.Sprintf("Only %d probes from %s to %s in the last %s, %d lost: too few to judge the pair alone. %s",
			r.Recent.Sent, r.Src, r.Dst, RecentSpan, r.Recent.Lost, rack)
		if len(r.OnPath) > 0 {
			r.Verdict += fmt.Sprintf(" %s %s, on %d of its %d paths, is blamed (%s, confidence %.0f%%).", r.OnPath[0].Kind, r.OnPath[0].Element, r.OnPath[0].Paths, r.Paths, r.OnPath[0].Symptom, r.OnPath[0].Confidence*100)
		}
	case !r.Degraded:
		r.Cause = CauseHealthy
		r.Verdict = fmt.Sprintf("Not the network, as far as probes see: %s -> %s is healthy (loss %s, p99 %s, in line with its baseline).", r.Src, r.Dst, pct(r.Recent.LossRatio), dur(r.Recent.P99))
		if len(r.OnPath) > 0 {
			r.Verdict += fmt.Sprintf(" %s on %d of its %d paths is suspected; ECMP keeps this pair's flows off it so far.", r.OnPath[0].Element, r.OnPath[0].Paths, r.Paths)
		}
	case lossBad && r.DstAgent != "" && r.DstAgent != "up":
		r.Cause = CausePeerDown
		r.Verdict = fmt.Sprintf("Not the network: the peer's agent is down (%s is %s) and %s -> %s is degraded (%s): a host whose agent and responder are gone loses every probe sent to it, whatever the network does (see meshlens diagnose host %s).", r.Dst, r.DstAgent, r.Src, r.Dst, what, r.Dst)
	case r.SrcHost.Sick || r.DstHost.Sick:
		r.Cause = CauseHost
		h := r.SrcHost
		if !h.Sick {
			h = r.DstHost
		}
		r.Verdict = fmt.Sprintf("Probably not the network: %s -> %s is degraded (%s), and %s is a sick host: it %s, so its other pairs through the same links are fine.", r.Src, r.Dst, what, h.Host, h.Why)
	case len(r.OnPath) > 0:
		r.Cause = CauseNetwork
		s := r.OnPath[0]
		r.Verdict = fmt.Sprintf("It is the network: %s -> %s is degraded (%s) and %s %s, on %d of its %d paths, is blamed (%s, confidence %.0f%%).", r.Src, r.Dst, what, s.Kind, s.Element, s.Paths, r.Paths, s.Symptom, s.Confidence*100)
	case lossBad && val(r.RackPairLoss) >= MinLoss && val(r.RackPairLoss) >= rl/(2*SickFactor):
		r.Cause = CauseNetwork
		r.Verdict = fmt.Sprintf("It is the network between %s and %s: %s -> %s is degraded (%s) and the whole rack pair loses %s; no single element is blamed yet.", r.SrcRack, r.DstRack, r.Src, r.Dst, what, pct(r.RackPairLoss))
	default:
		r.Cause = CauseUnknown
		r.Verdict = fmt.Sprintf("%s -> %s is degraded (%s) but neither end is a sick host, its rack peers are fine and nothing on its %d paths is blamed: a flow-specific drop (one ECMP path, a blackhole) is likely; look again with a longer --since.", r.Src, r.Dst, what, r.Paths)
	}
}

// recentStart is the start of the report's recent span.
func (r *PairReport) recentStart() time.Time { return r.Until.Add(-RecentSpan) }

// WritePair prints the report: verdict first, then the evidence.
func WritePair(w io.Writer, r *PairReport) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s -> %s  (%s .. %s)\n\n", r.Src, r.Dst, r.Since.UTC().Format(time.RFC3339), r.Until.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "verdict (%s): %s\n\n", r.Cause, r.Verdict)
	if d := r.Detail; d != nil && d.Mode != DetailFull {
		fmt.Fprintf(&b, "pair detail: %s\n\n", d.Note)
	}
	b.WriteString("evidence:\n")
	for _, e := range r.Evidence {
		fmt.Fprintf(&b, "  - %s\n", e)
	}
	fmt.Fprintf(&b, "\npaths: %d ECMP paths through %s\n", r.Paths, strings.Join(r.Elements, ", "))
	_, err := io.WriteString(w, b.String())
	return err
}
