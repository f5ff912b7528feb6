package alert

import (
	"strings"
	"testing"
	"time"
)

const goodConfig = `
alertmanagers:
  - {name: am, url: "http://127.0.0.1:9093"}
webhooks:
  - {name: ops, url: "https://hooks.example/meshlens", secret_env: OPS_SECRET}
resend_interval: 30s
remediation:
  max_layer_share: 20%
  rules:
    - name: drain-links
      kinds: [link, device]
      min_confidence: 0.9
      hold_down: 15m
      webhook: {url: "https://netops.example/drain", secret_env: DRAIN_SECRET}
    - {name: drain-hosts, kinds: [host], min_confidence: 0.95, command: [/usr/local/bin/drain-host, --reason, meshlens]}
`

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig("alerting.yaml", []byte(goodConfig), env(map[string]string{"OPS_SECRET": "a", "DRAIN_SECRET": "b"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Receivers) != 2 || c.Receivers[0].Name() != "am" || !c.Receivers[0].Repeat() || c.Receivers[1].Repeat() {
		t.Errorf("receivers %v", c.Receivers)
	}
	r := c.Remediation
	if c.ResendInterval != 30*time.Second || c.GroupWindow != DefaultGroupWindow || r.Execute || r.MaxLayerShare != 0.2 || len(r.Rules) != 2 || r.Rules[0].HoldDown != 15*time.Minute || r.Rules[1].HoldDown != 10*time.Minute {
		t.Errorf("config %+v", c)
	}
	if wa, ok := r.Rules[0].Action.(WebhookAction); !ok || string(wa.Hook.secret) != "b" {
		t.Errorf("rule 0 action %#v", r.Rules[0].Action)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"unknown key", "alertmanager: []\n", "a.yaml:1: field alertmanager not found"},
		{"bad url", "alertmanagers:\n  - {name: am, url: 'localhost:9093'}\n", "a.yaml:2: alertmanagers[0].url: \"localhost:9093\": want http(s)://host:port"},
		{"duplicate name", "alertmanagers:\n  - {name: x, url: 'http://a:1'}\nwebhooks:\n  - {name: x, url: 'http://b/'}\n", "a.yaml:4: webhooks[0].name: \"x\": two receivers"},
		{"unset secret", "webhooks:\n  - {name: x, url: 'http://b/', secret_env: NOPE}\n", "a.yaml:2: webhooks[0].secret_env: $NOPE is empty or unset"},
		{"bad share", "remediation:\n  max_layer_share: 150%\n", "a.yaml:2: remediation.max_layer_share: \"150%\": must be in"},
		{"rule without action", "remediation:\n  rules:\n    - {name: r, kinds: [link], min_confidence: 0.9}\n", "a.yaml:3: remediation.rules[0]: an action is required"},
		{"relative command", "remediation:\n  rules:\n    - {name: r, kinds: [switch], min_confidence: 2, command: [drain]}\n", "remediation.rules[0].command[0]: \"drain\": give an absolute path"},
		{"bad kind", "remediation:\n  rules:\n    - {name: r, kinds: [switch], min_confidence: 0.9, command: [/bin/true]}\n", "remediation.rules[0].kinds[0]: \"switch\": want link, device or host"},
		{"bad duration", "resend_interval: soon\n", "a.yaml:1: resend_interval: \"soon\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("a.yaml", []byte(tc.in), env(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("remediation: {rules: [{name: r, kinds: [host], min_confidence: 1, command: [/x]}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("fuzz.yaml", data, env(map[string]string{"OPS_SECRET": "a", "DRAIN_SECRET": "b"}))
		if err != nil {
			return
		}
		for _, r := range c.Remediation.Rules {
			if r.Action == nil || len(r.Kinds) == 0 {
				t.Fatalf("accepted a rule without action or kinds: %+v", r)
			}
		}
	})
}
