package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// serverFlags parses args as `meshlens server` would, then applies the
// environment and the config file as its PersistentPreRunE and RunE do,
// without running a server.
func serverFlags(t *testing.T, args []string, file string) (*pflag.FlagSet, error) {
	t.Helper()
	root := newRootCmd()
	var cmd *cobra.Command
	for _, c := range root.Commands() {
		if c.Name() == "server" {
			cmd = c
		}
	}
	if err := cmd.ParseFlags(args); err != nil {
		return nil, err
	}
	if err := flagsFromEnv(cmd.Flags()); err != nil {
		return nil, err
	}
	if file != "" {
		path := filepath.Join(t.TempDir(), "server.yaml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := applyConfigFile(cmd.Flags(), path); err != nil {
			return nil, err
		}
	}
	return cmd.Flags(), nil
}

// TestConfigFilePrecedence: flags > MESHLENS_* > config file > defaults,
// flag by flag.
func TestConfigFilePrecedence(t *testing.T) {
	const file = `http_addr: 127.0.0.1:1001
nats_addr: 127.0.0.1:1002
data_dir: /from/file
window: 5s
evidence: false
stream_replicas: 3
slo: [a.yaml, b.yaml]
remote_write_url: http://tsdb:9090/api/v1/write
remote_write_header: ["X-Scope-OrgID: fabric", "X-Extra: a,b"]
remote_write_external_label: [server=a]
http_target: ["web=http://10.0.0.1/,status=200", "api=https://api/"]
log_level: debug
pair_detail: off
pair_detail_max_bytes: 1048576
`
	tests := []struct {
		name string
		args []string
		env  map[string]string
		file string
		want map[string]string // flag → value as pflag prints it
	}{
		{"defaults", nil, nil, "", map[string]string{"http-addr": "127.0.0.1:9780", "window": "10s", "evidence": "true", "slo": "[]", "log-level": "info"}},
		{"file over defaults", nil, nil, file, map[string]string{
			"http-addr": "127.0.0.1:1001", "data-dir": "/from/file", "window": "5s", "evidence": "false", "stream-replicas": "3",
			"slo": "[a.yaml,b.yaml]", "remote-write-header": `[X-Scope-OrgID: fabric,"X-Extra: a,b"]`, "remote-write-external-label": "[server=a]",
			"log-level": "debug", "nats-url": "", "http-target": "web=http://10.0.0.1/ api=https://api/", "pair-detail": "false", "pair-detail-max-bytes": "1048576"}},
		{"env over file", nil, map[string]string{"MESHLENS_HTTP_ADDR": "127.0.0.1:2001", "MESHLENS_SLO": "c.yaml", "MESHLENS_PAIR_DETAIL": "on"}, file,
			map[string]string{"http-addr": "127.0.0.1:2001", "slo": "[c.yaml]", "nats-addr": "127.0.0.1:1002", "pair-detail": "true"}},
		{"flags over env and file", []string{"--http-addr=127.0.0.1:3001", "--evidence", "--window=1s"}, map[string]string{"MESHLENS_HTTP_ADDR": "127.0.0.1:2001", "MESHLENS_WINDOW": "2s"}, file,
			map[string]string{"http-addr": "127.0.0.1:3001", "evidence": "true", "window": "1s", "data-dir": "/from/file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			fs, err := serverFlags(t, tc.args, tc.file)
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				if got := fs.Lookup(name).Value.String(); got != want {
					t.Errorf("--%s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

// TestConfigFileTakesEveryFlag: every flag of `meshlens server` can be
// written in the file (its default, here).
func TestConfigFileTakesEveryFlag(t *testing.T) {
	fs, err := serverFlags(t, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	n := 0
	fs.VisitAll(func(f *pflag.Flag) {
		if notInConfigFile[f.Name] || f.Hidden {
			return
		}
		n++
		key := strings.ReplaceAll(f.Name, "-", "_")
		if _, list := f.Value.(pflag.SliceValue); list {
			b.WriteString(key + ": []\n")
			return
		}
		b.WriteString(key + ": '" + strings.ReplaceAll(f.DefValue, "'", "''") + "'\n")
	})
	if n < 40 {
		t.Fatalf("only %d flags: the server command lost its flags?", n)
	}
	if _, err := serverFlags(t, nil, b.String()); err != nil {
		t.Fatalf("a file of every flag's default: %v\n%s", err, b.String())
	}
}

// TestConfigFileErrors: each mistake is refused with the file's line and
// the key.
func TestConfigFileErrors(t *testing.T) {
	tests := []struct {
		name, file string
		want       string // in the error, after the file name
	}{
		{"unknown key", "http_addr: 127.0.0.1:1\nhtp_addr: x\n", ":2: htp_addr: unknown key"},
		{"dashes", "http-addr: 127.0.0.1:1\n", ":1: http-addr: unknown key: write it http_addr"},
		{"twice", "window: 1s\nwindow: 2s\n", ":2: window: given twice (first on line 1)"},
		{"a list for one value", "http_addr: [a, b]\n", ":1: http_addr: a list, and --http-addr takes one value"},
		{"a mapping", "slo: {a: b}\n", ":1: slo: want a value or a list"},
		{"bad duration", "window: soon\n", `:1: window: invalid value "soon"`},
		{"bad number", "stream_replicas: three\n", `:1: stream_replicas: invalid value "three"`},
		{"no value", "topology:\n", ":1: topology: no value"},
		{"the config itself", "config: other.yaml\n", ":1: config: unknown key"},
		{"not a mapping", "- a\n- b\n", ":1: want a mapping"},
		{"list of lists", "slo: [[a]]\n", ":1: slo: line 1: a list item must be a value"},
		{"a second document", "window: 1s\n---\nwindow: 2s\n", "a second YAML document"},
		{"not YAML", "window: [1s\n", "server.yaml:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := serverFlags(t, nil, tc.file)
			if err == nil || !strings.Contains(err.Error(), "server.yaml") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}

// TestServerRefusesABadConfigFile: `meshlens server --config` stops
// before starting anything when the file is wrong, and says where.
func TestServerRefusesABadConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.yaml")
	if err := os.WriteFile(path, []byte("data_dir: "+dir+"\nremote_write_urll: http://x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := newRootCmd()
	root.SetArgs([]string{"server", "--config", path})
	err := root.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), path+":2: remote_write_urll: unknown key") {
		t.Fatalf("error %v", err)
	}
	missing := filepath.Join(dir, "nope.yaml")
	root = newRootCmd()
	root.SetArgs([]string{"server", "--config", missing})
	if err := root.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("missing file: %v", err)
	}
}
