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
)

func init() { extraCommands = append(extraCommands, newSloCmd) }

func newSloCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "slo", Short: "Check SLO files and turn them into Prometheus rules"}
	cmd.AddCommand(newSloLintCmd(), newSloRulesCmd())
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
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s: target %s over %s, %s, %d alert tiers\n",
					s.Source, s.Name, fmtPercent(s.Target), windowName(s), s.SLI.Kind, len(s.Tiers))
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

func fmtPercent(r float64) string { return fmt.Sprintf("%g%%", r*100) }

func windowName(s slo.SLO) string {
	if s.Calendar {
		return fmt.Sprintf("calendar %s from %s", s.Period, s.Period.Start.Format("2006-01-02 15:04 MST"))
	}
	return model.Duration(s.Window).String()
}
