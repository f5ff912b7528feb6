package main

import (
	"encoding/json"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshlens/meshlens/internal/diagnose"
)

func init() { extraCommands = append(extraCommands, newIncidentsCmd) }

// serverClient builds the API client of the operator commands: --server
// (or MESHLENS_SERVER), token from MESHLENS_TOKEN.
func serverClient(cmd *cobra.Command) (*diagnose.Client, error) {
	server, _ := cmd.Flags().GetString("server")
	return diagnose.NewClient(server, os.Getenv(diagnose.TokenEnv), nil)
}

func addServerFlag(cmd *cobra.Command) {
	cmd.PersistentFlags().String("server", diagnose.DefaultServer, "URL of the meshlens server's API (token from $"+diagnose.TokenEnv+")")
}

func writeJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newIncidentsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "incidents", Short: "List, show and acknowledge incidents of a running server"}
	addServerFlag(cmd)
	var asJSON bool
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	list := &cobra.Command{
		Use:   "list",
		Short: "List incidents, most recent first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := serverClient(cmd)
			if err != nil {
				return err
			}
			incs, err := c.Incidents(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd, incs)
			}
			return diagnose.WriteIncidentList(cmd.OutOrStdout(), incs, time.Now())
		},
	}
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one incident: culprit, SLOs burned, timeline, affected pairs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := serverClient(cmd)
			if err != nil {
				return err
			}
			inc, err := c.Incident(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd, inc)
			}
			return diagnose.WriteIncident(cmd.OutOrStdout(), inc)
		},
	}
	var comment string
	ack := &cobra.Command{
		Use:   "ack ID",
		Short: "Acknowledge an open incident (needs an operator token in $" + diagnose.TokenEnv + ")",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := serverClient(cmd)
			if err != nil {
				return err
			}
			inc, err := c.Acknowledge(cmd.Context(), args[0], comment)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd, inc)
			}
			return diagnose.WriteIncident(cmd.OutOrStdout(), inc)
		},
	}
	ack.Flags().StringVar(&comment, "comment", "", "what you are doing about it")
	cmd.AddCommand(list, show, ack)
	return cmd
}
