package server

import (
	"strings"
	"testing"
)

// TestCheckRole: role settings that cannot work are refused with the flag
// that is wrong or missing.
func TestCheckRole(t *testing.T) {
	ok := Config{Role: RoleAggregator, NATSURL: "nats://n1:4222", QueryURL: "http://vm:8428", RemoteWrite: RemoteWriteConfig{URL: "http://vm:8428/api/v1/write"}}
	for _, c := range []struct {
		name string
		edit func(*Config)
		want string // "" for accepted
	}{
		{"aggregator", func(*Config) {}, ""},
		{"analyzer without remote write", func(c *Config) { c.Role, c.RemoteWrite.URL = RoleAnalyzer, "" }, ""},
		{"one process", func(c *Config) { *c = Config{} }, ""},
		{"unknown role", func(c *Config) { c.Role = "collector" }, `--role "collector"`},
		{"no bus", func(c *Config) { c.NATSURL = "" }, "--nats-url"},
		{"no TSDB", func(c *Config) { c.Role, c.QueryURL = RoleAPI, "" }, "--query-url"},
		{"aggregator without remote write", func(c *Config) { c.RemoteWrite.URL = "" }, "--remote-write-url"},
		{"fixed partitions", func(c *Config) { c.Partitions = []int{0} }, "leases"},
		{"external labels", func(c *Config) { c.RemoteWrite.ExternalLabels = []string{"server=a"} }, "--remote-write-external-label"},
		{"query URL without a role", func(c *Config) { *c = Config{QueryURL: "http://vm:8428"} }, "--query-url is for --role"},
	} {
		cfg := ok
		c.edit(&cfg)
		err := checkRole(cfg)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error naming %q", c.name, err, c.want)
		}
	}
}
