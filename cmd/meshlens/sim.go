package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/meshlens/meshlens/internal/analyze"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/sim"
)

func init() { extraCommands = append(extraCommands, newSimCmd) }

func newSimCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Fault-injection lab: simulated fabrics with known faults",
	}
	cmd.AddCommand(newSimRunCmd(), newSimLiveCmd(), newSimTopologyCmd())
	return cmd
}

func newSimRunCmd() *cobra.Command {
	var asJSON, rollupsOnly bool
	var lz string
	evidence := true
	cmd := &cobra.Command{
		Use:   "run SCENARIO.yaml",
		Short: "Run a scenario on a virtual clock and score what was blamed",
		Long: `Runs the scenario through the real aggregation and localization code on
a virtual clock, and prints the ground truth beside what was concluded.
The named localizer (meshlens or vote) is run side by side with the
other, which is printed too. Exit status 0 means the run completed;
accuracy is reported, not asserted.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sc, err := sim.Load(args[0])
			if err != nil {
				return err
			}
			names := []string{localize.NameMeshlens, localize.NameVote}
			switch lz {
			case localize.NameMeshlens:
			case localize.NameVote:
				names = []string{localize.NameVote, localize.NameMeshlens}
			default:
				return fmt.Errorf("sim run: unknown localizer %q (want %s or %s)", lz, localize.NameMeshlens, localize.NameVote)
			}
			rep, err := sim.Run(cmd.Context(), sc, sim.Options{Localizers: names, RollupsOnly: rollupsOnly, Evidence: analyze.EvidenceConfig{Off: !evidence}})
			if err != nil {
				return err
			}
			var ru syscall.Rusage
			if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
				rep.PeakRSSBytes = uint64(ru.Maxrss) * 1024 // Linux reports KiB
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return printSimReport(cmd.OutOrStdout(), rep)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().StringVar(&lz, "localizer", localize.NameMeshlens, "localizer reported first: meshlens or vote")
	cmd.Flags().BoolVar(&rollupsOnly, "rollups-only", false, "aggregate without per-pair state: same verdicts, memory for fabrics of 50,000 hosts")
	cmd.Flags().BoolVar(&evidence, "evidence", true, "evidence on demand, as the server's default: suspected elements' pairs are probed harder (--evidence=false: today's fixed rate)")
	return cmd
}

func printSimReport(w io.Writer, rep *sim.Report) error {
	fmt.Fprintf(w, "scenario %s: %d hosts, %d rounds of %vs, %d probes (%d asked for as evidence), wall %.1fs, peak RSS %d MiB\n",
		rep.Scenario, rep.Hosts, rep.Rounds, float64(rep.Interval), rep.Probes, rep.ExtraProbes, rep.WallSeconds, rep.PeakRSSBytes>>20)
	for _, r := range rep.Results {
		fmt.Fprintf(w, "\n%s: precision %.2f recall %.2f F1 %.2f, median detection %s, localization %s\n",
			r.Localizer, r.Precision, r.Recall, r.F1, secsOrDash(r.MedianDetection), secsOrDash(r.MedianLocalization))
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tELEMENT\tONSET\tFLAGGED\tLOCALIZED\tLINGERED\tBLAMED")
		for _, f := range r.Faults {
			fmt.Fprintf(tw, "%s\t%s\t%.0fs\t%s\t%s\t%s\t%s\n", f.Kind, f.Element, float64(f.Onset),
				ptrSecs(f.FirstFlagged), ptrSecs(f.Localized), ptrSecs(f.Lingered), strings.Join(f.Blamed, ", "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(r.FalsePositives) > 0 {
			fmt.Fprintf(w, "false positives: %s\n", strings.Join(r.FalsePositives, ", "))
		}
	}
	return nil
}

func ptrSecs(s *sim.Seconds) string {
	if s == nil {
		return "-"
	}
	return fmt.Sprintf("+%.0fs", float64(*s))
}

func secsOrDash(s sim.Seconds) string {
	if s < 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fs", float64(s))
}
