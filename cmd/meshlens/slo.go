package main

import (
	"fmt"
	"os"
	"time"

	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"

	"github.com/meshlens/meshlens/internal/aggregate"
	"github.com/meshlens/meshlens/internal/analyze"
	"github.com/meshlens/meshlens/internal/slo"
	"github.com/meshlens/meshlens/internal/yamlfile"
)

func init() { extraCommands = append(extraCommands, newSloCmd) }

func newSloCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "slo", Short: "Check SLO files, turn them into Prometheus rules, import Sloth and Pyrra SLOs"}
	cmd.AddCommand(newSloLintCmd(), newSloRulesCmd(), newSloImportCmd())
	return cmd
}

func newSloLintCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lint FILE...",
		Short: "Validate SLO files (meshlens YAML or OpenSLO openslo/v1); errors name file, line and field; warnings say what is not used",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := slo.Read(args...)
			for _, w := range res.Warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
			}
			if err != nil {
				return err
			}
			for _, s := range res.SLOs {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s: target %s over %s, %s%s, %d alert tiers\n",
					s.Source, s.Name, fmtPercent(s.Target), windowName(s), s.SLI.Kind, budgetName(s), len(s.Tiers))
			}
			return nil
		},
	}
}

func newSloRulesCmd() *cobra.Command {
	var (
		out      string
		interval time.Duration
		delay    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rules FILE...",
		Short: "Print Prometheus recording and alerting rules equivalent to meshlens's SLO evaluation",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := slo.Read(args...)
			for _, w := range res.Warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
			}
			if err != nil {
				return err
			}
			data, err := slo.GenerateRules(res.SLOs, slo.RulesOptions{Interval: interval, DataDelay: delay})
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(data)
				return err
			}
			if err := os.WriteFile(out, data, 0o644); err != nil {
				return fmt.Errorf("write rules to %q: %w", out, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the rules to this file instead of stdout")
	cmd.Flags().DurationVar(&interval, "interval", 0, "evaluation interval of the rule groups (default: Prometheus's global one)")
	cmd.Flags().DurationVar(&delay, "data-delay", analyze.EvidenceDelay(aggregate.Config{}),
		"end the windows of SLOs over meshlens's counters this far back, as meshlens does: the server's --lateness plus its --window (0: no offset; SLOs of your own metrics are never offset)")
	return cmd
}

func newSloImportCmd() *cobra.Command {
	var (
		from string
		out  string
	)
	cmd := &cobra.Command{
		Use:   "import --from sloth|pyrra FILE",
		Short: "Convert a Sloth (prometheus/v1) or Pyrra (ServiceLevelObjective) file into OpenSLO documents meshlens reads, keeping alert names, routing labels and annotations; what does not map is listed on stderr",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if from != slo.FromSloth && from != slo.FromPyrra {
				return fmt.Errorf("--from %q: want %s or %s", from, slo.FromSloth, slo.FromPyrra)
			}
			data, err := yamlfile.ReadFile(args[0], yamlfile.MaxConfigBytes)
			if err != nil {
				return fmt.Errorf("slo import: read %q: %w", args[0], err)
			}
			imp, err := slo.Import(from, slo.File{Name: args[0], Data: data})
			for _, u := range imp.Unmapped {
				fmt.Fprintf(cmd.ErrOrStderr(), "not mapped: %s\n", u)
			}
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				if _, err := cmd.OutOrStdout().Write(imp.Document); err != nil {
					return err
				}
			} else if err := os.WriteFile(out, imp.Document, 0o644); err != nil {
				return fmt.Errorf("write the imported SLOs to %q: %w", out, err)
			}
			for _, s := range imp.SLOs {
				fmt.Fprintf(cmd.ErrOrStderr(), "imported %s: target %s over %s, %d alert tiers\n", s.Name, fmtPercent(s.Target), windowName(s), len(s.Tiers))
			}
			if imp.Skipped > 0 {
				return fmt.Errorf("%d SLO(s) of %s not imported (why is listed above); the others were written", imp.Skipped, args[0])
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the file's format: sloth (a prometheus/v1 service spec) or pyrra (pyrra.dev/v1alpha1 ServiceLevelObjectives)")
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the OpenSLO documents to this file instead of stdout")
	return cmd
}

// budgetName says what a time-slice budget counts ("" for events).
func budgetName(s slo.SLO) string {
	switch s.Budgeting {
	case slo.Timeslices:
		return fmt.Sprintf(", %s slices good at %s", model.Duration(s.TimeSlice), fmtPercent(s.TimeSliceTarget))
	case slo.RatioTimeslices:
		return fmt.Sprintf(", average of %s slices", model.Duration(s.TimeSlice))
	}
	return ""
}

func fmtPercent(r float64) string { return fmt.Sprintf("%g%%", r*100) }

func windowName(s slo.SLO) string {
	if s.Calendar {
		return fmt.Sprintf("calendar %s from %s", s.Period, s.Period.Start.Format("2006-01-02 15:04 MST"))
	}
	return model.Duration(s.Window).String()
}
