package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/meshlens/meshlens/internal/diagnose"
)

func init() { extraCommands = append(extraCommands, newDiagnoseCmd) }

func newDiagnoseCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "diagnose",
		Short: "Is it the network? Troubleshoot a pair, a host or a switch/link against a running server",
	}
	addServerFlag(cmd)
	var asJSON bool
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")

	var since time.Duration
	pair := &cobra.Command{
		Use:   "pair SRC DST",
		Short: "Compare a pair with its baseline and its rack and pod peers, check both ends and the elements on its paths",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := serverClient(cmd)
			if err != nil {
				return err
			}
			r, err := diagnose.Pair(cmd.Context(), c, args[0], args[1], since, time.Now())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd, r)
			}
			return diagnose.WritePair(cmd.OutOrStdout(), r)
		},
	}
	pair.Flags().DurationVar(&since, "since", time.Hour, "how far back the baseline goes (the last 5m are \"now\")")

	host := &cobra.Command{
		Use:   "host HOST",
		Short: "Health of a host: its agent, its loss against its rack's, suspects above it, recent incidents",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := serverClient(cmd)
			if err != nil {
				return err
			}
			r, err := diagnose.Host(cmd.Context(), c, args[0], time.Now())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd, r)
			}
			return diagnose.WriteHost(cmd.OutOrStdout(), r)
		},
	}

	element := &cobra.Command{
		Use:   "element NAME",
		Short: "Health of a switch or link (A--B, A->B): suspects, incidents, who depends on it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := serverClient(cmd)
			if err != nil {
				return err
			}
			r, err := diagnose.Element(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd, r)
			}
			return diagnose.WriteElement(cmd.OutOrStdout(), r)
		},
	}
	cmd.AddCommand(pair, host, element)
	return cmd
}
