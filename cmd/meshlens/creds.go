package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/meshlens/meshlens/internal/agent"
	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/server"
)

func newCredsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "creds",
		Short: "Per-agent NATS credentials for the embedded bus (server --creds-dir)",
	}
	cmd.AddCommand(newCredsIssueCmd(), newCredsRevokeCmd())
	return cmd
}

func newCredsIssueCmd() *cobra.Command {
	var dir, out string
	var privileged bool
	var expires time.Duration
	cmd := &cobra.Command{
		Use:   "issue HOST",
		Short: "Mint NATS credentials for HOST's agent (or, with --privileged, for a tool such as sim live)",
		Long: `Mints a NATS credentials file signed by the account key in --creds-dir
(created on first use; the server must run with the same --creds-dir).
An agent's credentials may publish only to its own results subject and
read only its own pinglist and the fleet's responder key. The server
needs no restart to accept them. Give them to the agent with --creds.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return errors.New("--creds-dir is required (the server's --creds-dir)")
			}
			auth, err := bus.OpenAuthority(dir)
			if err != nil {
				return err
			}
			var creds []byte
			if privileged {
				creds, err = auth.IssuePrivileged(args[0], expires)
			} else {
				creds, err = auth.IssueAgent(args[0], expires)
			}
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(creds)
				return err
			}
			if err := os.WriteFile(out, creds, 0o600); err != nil {
				return fmt.Errorf("creds: writing %q: %w", out, err)
			}
			// WriteFile keeps the mode of an existing file: a secret must
			// not stay world-readable.
			if err := os.Chmod(out, 0o600); err != nil {
				return fmt.Errorf("creds: %q: %w", out, err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "creds-dir", "", "the server's credentials directory (its keys; created if missing)")
	f.StringVar(&out, "out", "", "write the credentials to FILE (mode 0600) instead of stdout")
	f.BoolVar(&privileged, "privileged", false, "full access to the meshlens account (sim live, operators' tools), not an agent")
	f.DurationVar(&expires, "expires", 0, "credentials expire after this long (0: never)")
	return cmd
}

func newCredsRevokeCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke every NATS credential issued so far for a host (or a privileged name)",
		Long: `Revokes every user key issued so far for NAME: the running server
disconnects them within seconds and refuses them from then on. Credentials
issued afterwards for NAME are new keys and work.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return errors.New("--creds-dir is required (the server's --creds-dir)")
			}
			auth, err := bus.OpenAuthority(dir)
			if err != nil {
				return err
			}
			n, err := auth.Revoke(args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "revoked %d key(s) of %s\n", n, args[0])
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "creds-dir", "", "the server's credentials directory")
	return cmd
}

func init() { extraCommands = append(extraCommands, newCredsCmd) }

// addServerSecurityFlags adds the server's TLS and credentials flags.
func addServerSecurityFlags(cmd *cobra.Command, cfg *server.Config) {
	f := cmd.Flags()
	f.StringVar(&cfg.CredsDir, "creds-dir", "", "require per-agent NATS credentials (meshlens creds issue HOST --creds-dir DIR); keys are created here on first start")
	f.StringVar(&cfg.NATSTLS.Cert, "nats-tls-cert", "", "TLS certificate (PEM) of the embedded NATS server; with --nats-url, the server's client certificate")
	f.StringVar(&cfg.NATSTLS.Key, "nats-tls-key", "", "TLS key (PEM) of the embedded NATS server; with --nats-url, the server's client key")
	f.StringVar(&cfg.NATSTLS.CA, "nats-tls-client-ca", "", "require NATS client certificates signed by this CA (mTLS)")
	f.StringVar(&cfg.NATSServerCA, "nats-tls-ca", "", "with --nats-url: CA of the cluster's certificates; turns on TLS")
	f.StringVar(&cfg.NATSCreds, "nats-creds", "", "with --nats-url: the server's NATS credentials file")
	f.StringVar(&cfg.HTTPTLS.Cert, "tls-cert", "", "TLS certificate (PEM) of the HTTP API and UI")
	f.StringVar(&cfg.HTTPTLS.Key, "tls-key", "", "TLS key (PEM) of the HTTP API and UI")
	f.StringVar(&cfg.HTTPTLS.CA, "tls-client-ca", "", "require HTTP client certificates signed by this CA (mTLS)")
	f.BoolVar(&cfg.InsecurePlaintext, "insecure-plaintext", false, "allow plaintext HTTP and NATS listeners on non-loopback addresses")
}

// agentSecurity is the agent's TLS, plaintext and test-only clock flags.
type agentSecurity struct {
	tls         bus.TLSFiles
	insecure    bool
	clockOffset time.Duration
}

func (s *agentSecurity) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.tls.CA, "nats-tls-ca", "", "CA (PEM) that signed the NATS server's certificate; turns on TLS")
	f.StringVar(&s.tls.Cert, "nats-tls-cert", "", "client certificate (PEM) for NATS mTLS")
	f.StringVar(&s.tls.Key, "nats-tls-key", "", "client key (PEM) for NATS mTLS")
	f.BoolVar(&s.insecure, "insecure-plaintext", false, "allow plaintext NATS to non-loopback servers")
	// Fault tests fake a host whose clock is wrong.
	f.DurationVar(&s.clockOffset, "clock-offset", 0, "shift the agent's clock (tests only)")
	_ = f.MarkHidden("clock-offset")
}

func (s *agentSecurity) apply(cfg *agent.Config) error {
	if s.tls.Enabled() {
		tc, err := bus.ClientTLSConfig(s.tls)
		if err != nil {
			return fmt.Errorf("agent: --nats-tls-*: %w", err)
		}
		cfg.TLS = tc
	}
	if err := bus.CheckURLs("--nats-url", cfg.NATSURL, cfg.TLS != nil, s.insecure); err != nil {
		return err
	}
	if cfg.CredsFile != "" {
		// The credentials allow replies only under this host's inbox.
		if err := bus.CheckHostName(cfg.Host); err != nil {
			return err
		}
		cfg.NATSOptions = append(cfg.NATSOptions, nats.CustomInboxPrefix(bus.AgentInboxPrefix(cfg.Host)))
	}
	if s.clockOffset != 0 {
		cfg.Clock = offsetClock{Clock: clock.Real{}, offset: s.clockOffset}
	}
	return nil
}

// offsetClock is a clock that is wrong by a fixed offset: timers run at
// the real pace, Now lies.
type offsetClock struct {
	clock.Clock
	offset time.Duration
}

func (c offsetClock) Now() time.Time { return c.Clock.Now().Add(c.offset) }
