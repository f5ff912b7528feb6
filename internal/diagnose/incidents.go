package diagnose

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshlens/meshlens/internal/alert"
)

// API paths of incidents (served by the server from alert.Manager).
const (
	IncidentsPath = "/api/v1/incidents"
)

// Incidents lists the server's incidents.
func (c *Client) Incidents(ctx context.Context) ([]alert.Incident, error) {
	var out []alert.Incident
	if err := c.Get(ctx, IncidentsPath, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Incident fetches one incident.
func (c *Client) Incident(ctx context.Context, id string) (alert.Incident, error) {
	var out alert.Incident
	err := c.Get(ctx, IncidentsPath+"/"+url.PathEscape(id), nil, &out)
	return out, err
}

// Acknowledge takes incident id on, as the client's token (operator role
// or above), with an optional comment.
func (c *Client) Acknowledge(ctx context.Context, id, comment string) (alert.Incident, error) {
	var out alert.Incident
	err := c.Post(ctx, IncidentsPath+"/"+url.PathEscape(id)+"/ack", map[string]string{"comment": comment}, &out)
	return out, err
}

// WriteIncidentList prints incidents as a table, most recent first.
func WriteIncidentList(w io.Writer, incs []alert.Incident, now time.Time) error {
	sort.SliceStable(incs, func(i, j int) bool { return incs[i].Start.After(incs[j].Start) })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tSTARTED\tDURATION\tBLAMED\tSLOS\tTITLE")
	for _, inc := range incs {
		end := inc.End
		if inc.State == alert.IncidentOpen {
			end = now
		}
		blamed := "-"
		if inc.Blamed != nil {
			blamed = inc.Blamed.Element
		}
		var slos []string
		for _, s := range inc.SLOs {
			slos = append(slos, s.SLO)
		}
		if len(slos) == 0 {
			slos = []string{"-"}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", inc.ID, inc.State, inc.Start.UTC().Format("2006-01-02 15:04:05"),
			end.Sub(inc.Start).Round(time.Second), blamed, strings.Join(slos, ","), inc.Title)
	}
	return tw.Flush()
}

// WriteIncident prints one incident: culprit, SLOs, timeline, pairs.
func WriteIncident(w io.Writer, inc alert.Incident) error {
	var b strings.Builder
	fmt.Fprintf(&b, "incident %s (%s)\n  %s\n", inc.ID, inc.State, inc.Title)
	fmt.Fprintf(&b, "  started  %s\n  detected %s (after %s)\n", inc.Start.UTC().Format(time.RFC3339), inc.Detected.UTC().Format(time.RFC3339), inc.Detected.Sub(inc.Start).Round(time.Second))
	if !inc.End.IsZero() {
		fmt.Fprintf(&b, "  resolved %s (lasted %s)\n", inc.End.UTC().Format(time.RFC3339), inc.End.Sub(inc.Start).Round(time.Second))
	}
	if a := inc.Acknowledged; a != nil {
		fmt.Fprintf(&b, "  acknowledged %s by %s", a.At.UTC().Format(time.RFC3339), a.By)
		if a.Comment != "" {
			fmt.Fprintf(&b, ": %s", a.Comment)
		}
		b.WriteString("\n")
	}
	if c := inc.Blamed; c != nil {
		fmt.Fprintf(&b, "\nblamed: %s %s", c.Kind, c.Element)
		if c.Symptom != "" {
			fmt.Fprintf(&b, " (%s", c.Symptom)
			if c.Symptom == "latency" {
				fmt.Fprintf(&b, ", +%s", time.Duration(c.Estimate*float64(time.Second)).Round(time.Microsecond))
			} else {
				fmt.Fprintf(&b, ", %.3g%% drop", c.Estimate*100)
			}
			b.WriteString(")")
		}
		fmt.Fprintf(&b, ", confidence %.0f%%\n", c.Confidence*100)
		if c.Evidence != "" {
			fmt.Fprintf(&b, "  evidence: %s\n", c.Evidence)
		}
	} else {
		b.WriteString("\nblamed: nothing yet (no localizer verdict for these scopes)\n")
	}
	if len(inc.SLOs) > 0 {
		b.WriteString("\nSLOs burned:\n")
		for _, s := range inc.SLOs {
			fmt.Fprintf(&b, "  %-30s budget consumed %5.1f%%  peak burn %.1fx", s.SLO, s.Consumed*100, s.PeakBurnRate)
			if s.BudgetNow != nil {
				fmt.Fprintf(&b, "  remaining %.1f%%", *s.BudgetNow*100)
			}
			b.WriteString("\n")
		}
	}
	if len(inc.Scopes) > 0 {
		b.WriteString("\nscopes:")
		for _, s := range inc.Scopes {
			b.WriteString(" " + scopeString(s.DC, s.Pod, s.Rack, s.Host, s.Target, s.Proto))
		}
		b.WriteString("\n")
	}
	b.WriteString("\ntimeline:\n")
	for _, e := range inc.Timeline {
		fmt.Fprintf(&b, "  %s  %-14s %s\n", e.At.UTC().Format("15:04:05"), e.Kind, e.Detail)
	}
	if len(inc.AffectedPairs) > 0 {
		fmt.Fprintf(&b, "\naffected pairs (%d):\n", len(inc.AffectedPairs))
		for i, p := range inc.AffectedPairs {
			if i == 20 {
				fmt.Fprintf(&b, "  ... and %d more\n", len(inc.AffectedPairs)-20)
				break
			}
			fmt.Fprintf(&b, "  %s\n", p)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func scopeString(dc, pod, rack, host, target, proto string) string {
	var parts []string
	for _, kv := range [][2]string{{"dc", dc}, {"pod", pod}, {"rack", rack}, {"host", host}, {"target", target}, {"proto", proto}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	if len(parts) == 0 {
		return "all-probes"
	}
	return strings.Join(parts, ",")
}
