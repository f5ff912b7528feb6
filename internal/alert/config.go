package alert

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/meshlens/meshlens/internal/yamlfile"
)

// FileConfig is an alerting file: where alerts go and what remediation may
// do. Secrets never sit in the file: they are named by environment variable
// or file.
//
//	alertmanagers:
//	  - {name: am, url: "http://127.0.0.1:9093"}
//	webhooks:
//	  - {name: ops, url: "https://hooks.example/meshlens", secret_env: OPS_HOOK_SECRET}
//	resend_interval: 1m
//	group_window: 5m
//	remediation:
//	  execute: false              # dry-run unless true
//	  max_actions_per_hour: 3
//	  max_layer_share: 25%
//	  max_evidence_age: 20s
//	  rules:
//	    - name: drain-links
//	      kinds: [link]
//	      min_confidence: 0.9
//	      hold_down: 10m
//	      webhook: {url: "https://netops.example/drain", secret_env: DRAIN_SECRET}
//	    - {name: drain-hosts, kinds: [host], min_confidence: 0.95, hold_down: 30m, command: [/usr/local/bin/drain-host]}
type FileConfig struct {
	Receivers      []Receiver
	ResendInterval time.Duration
	GroupWindow    time.Duration
	// Remediation lacks Layers, Audit and Manager, which the server sets.
	Remediation RemediatorConfig
}

type fileAlerting struct {
	Alertmanagers  []fileEndpoint   `yaml:"alertmanagers"`
	Webhooks       []fileEndpoint   `yaml:"webhooks"`
	ResendInterval string           `yaml:"resend_interval"`
	GroupWindow    string           `yaml:"group_window"`
	Remediation    *fileRemediation `yaml:"remediation"`
}

type fileEndpoint struct {
	Name       string `yaml:"name"`
	URL        string `yaml:"url"`
	SecretEnv  string `yaml:"secret_env"`
	SecretFile string `yaml:"secret_file"`
}

type fileRemediation struct {
	Execute           bool       `yaml:"execute"`
	MaxActionsPerHour int        `yaml:"max_actions_per_hour"`
	MaxLayerShare     string     `yaml:"max_layer_share"`
	MaxEvidenceAge    string     `yaml:"max_evidence_age"`
	Rules             []fileRule `yaml:"rules"`
}

type fileRule struct {
	Name          string        `yaml:"name"`
	Kinds         []string      `yaml:"kinds"`
	MinConfidence float64       `yaml:"min_confidence"`
	HoldDown      string        `yaml:"hold_down"`
	Webhook       *fileEndpoint `yaml:"webhook"`
	Command       []string      `yaml:"command"`
	Timeout       string        `yaml:"timeout"`
}

// LoadConfig reads an alerting file.
func LoadConfig(path string) (*FileConfig, error) {
	data, err := yamlfile.ReadFile(path, yamlfile.MaxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("alert: read %q: %w", path, err)
	}
	return ParseConfig(path, data, os.Getenv)
}

// ParseConfig validates an alerting file; getenv resolves secret_env.
// Every problem is reported as file:line: field: message.
func ParseConfig(file string, data []byte, getenv func(string) string) (*FileConfig, error) {
	var f fileAlerting
	doc, err := yamlfile.Decode(file, data, &f)
	if err != nil {
		return nil, fmt.Errorf("alert: %w", err)
	}
	c := &configParser{p: doc.NewProblems(), getenv: getenv, names: map[string]bool{}}
	out := &FileConfig{}
	for i, e := range f.Alertmanagers {
		c.name(yamlfile.Path("alertmanagers", i, "name"), e.Name)
		if e.SecretEnv != "" || e.SecretFile != "" {
			c.p.Addf(yamlfile.Path("alertmanagers", i), "Alertmanager's v2 API takes no signature secret")
		}
		am, err := NewAlertmanager(e.Name, e.URL, "", nil)
		if err != nil {
			c.p.Addf(yamlfile.Path("alertmanagers", i, "url"), "%q: want http(s)://host:port", e.URL)
			continue
		}
		out.Receivers = append(out.Receivers, am)
	}
	for i, e := range f.Webhooks {
		c.name(yamlfile.Path("webhooks", i, "name"), e.Name)
		if wh := c.webhook(yamlfile.Path("webhooks", i), e); wh != nil {
			out.Receivers = append(out.Receivers, wh)
		}
	}
	out.ResendInterval = c.dur(yamlfile.Path("resend_interval"), f.ResendInterval, DefaultResendInterval)
	out.GroupWindow = c.dur(yamlfile.Path("group_window"), f.GroupWindow, DefaultGroupWindow)
	if f.Remediation != nil {
		out.Remediation = c.remediation(yamlfile.Path("remediation"), f.Remediation)
	}
	if err := c.p.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// ParseRemediation validates a remediation block on its own (the
// `remediation:` section of an alerting file, as a document), as the admin
// API receives it. Such a block may not run commands or read secret files
// on the server's host: an API token is not a shell on it. A block with
// none of them parses as ParseConfig parses the same section.
func ParseRemediation(file string, data []byte, getenv func(string) string) (RemediatorConfig, error) {
	var r fileRemediation
	doc, err := yamlfile.Decode(file, data, &r)
	if err != nil {
		return RemediatorConfig{}, fmt.Errorf("alert: %w", err)
	}
	c := &configParser{p: doc.NewProblems(), getenv: getenv, names: map[string]bool{}}
	for i, fr := range r.Rules {
		if len(fr.Command) > 0 {
			c.p.Addf(yamlfile.Path("rules", i, "command"), "commands run on the server's host: configure them in the alerting file there, not through the API")
		}
		if fr.Webhook != nil && fr.Webhook.SecretFile != "" {
			c.p.Addf(yamlfile.Path("rules", i, "webhook", "secret_file"), "files are read on the server's host: use secret_env, or the alerting file there")
			r.Rules[i].Webhook.SecretFile = "" // and this one is not read
		}
	}
	rc := c.remediation(nil, &r)
	if err := c.p.Err(); err != nil {
		return RemediatorConfig{}, err
	}
	return rc, nil
}

// configParser collects an alerting file's problems while it builds the
// configuration.
type configParser struct {
	p      *yamlfile.Problems
	getenv func(string) string
	names  map[string]bool // receiver names seen
}

func (c *configParser) dur(path []any, v string, def time.Duration) time.Duration {
	if v == "" {
		return def
	}
	d, err := model.ParseDuration(v)
	if err != nil || d <= 0 {
		c.p.Addf(path, "%q: want a positive duration like 30s, 5m", v)
		return def
	}
	return time.Duration(d)
}

func (c *configParser) name(path []any, n string) {
	if n == "" {
		c.p.Addf(path, "missing")
	} else if c.names[n] {
		c.p.Addf(path, "%q: two receivers with this name", n)
	}
	c.names[n] = true
}

func (c *configParser) secret(path []any, e fileEndpoint) []byte {
	switch {
	case e.SecretEnv != "" && e.SecretFile != "":
		c.p.Addf(path, "give secret_env or secret_file, not both")
	case e.SecretEnv != "":
		v := c.getenv(e.SecretEnv)
		if v == "" {
			c.p.Addf(at(path, "secret_env"), "$%s is empty or unset", e.SecretEnv)
		}
		return []byte(v)
	case e.SecretFile != "":
		b, err := yamlfile.ReadFile(e.SecretFile, yamlfile.MaxConfigBytes)
		if err != nil {
			c.p.Addf(at(path, "secret_file"), "%v", err)
		}
		return []byte(strings.TrimSpace(string(b)))
	}
	return nil
}

func (c *configParser) webhook(path []any, e fileEndpoint) *Webhook {
	s := c.secret(path, e)
	wh, err := NewWebhook(e.Name, e.URL, s, nil)
	if err != nil {
		c.p.Addf(at(path, "url"), "%q: want http(s)://host/path", e.URL)
		return nil
	}
	return wh
}

// remediation builds a remediation block found at base.
func (c *configParser) remediation(base []any, r *fileRemediation) RemediatorConfig {
	var rc RemediatorConfig
	rc.Execute = r.Execute
	rc.MaxActionsPerHour = r.MaxActionsPerHour
	if r.MaxActionsPerHour < 0 {
		c.p.Addf(at(base, "max_actions_per_hour"), "%d: must be positive", r.MaxActionsPerHour)
	}
	if r.MaxLayerShare != "" {
		v, err := parseShare(r.MaxLayerShare)
		if err != nil {
			c.p.Addf(at(base, "max_layer_share"), "%v", err)
		}
		rc.MaxLayerShare = v
	}
	// Unset stays 0: the server makes it two of its windows.
	rc.MaxEvidenceAge = c.dur(at(base, "max_evidence_age"), r.MaxEvidenceAge, 0)
	rules := map[string]bool{}
	for i, fr := range r.Rules {
		rb := at(base, "rules", i)
		rule := RemediationRule{Name: fr.Name, Kinds: fr.Kinds, MinConfidence: fr.MinConfidence}
		if fr.Name == "" || rules[fr.Name] {
			c.p.Addf(at(rb, "name"), "%q: missing or duplicate", fr.Name)
		}
		rules[fr.Name] = true
		if len(fr.Kinds) == 0 {
			c.p.Addf(at(rb, "kinds"), "missing (link, device, host)")
		}
		for j, k := range fr.Kinds {
			if k != "link" && k != "device" && k != "host" {
				c.p.Addf(at(rb, "kinds", j), "%q: want link, device or host", k)
			}
		}
		if !(fr.MinConfidence > 0 && fr.MinConfidence <= 1) {
			c.p.Addf(at(rb, "min_confidence"), "%v: want a confidence in (0, 1]", fr.MinConfidence)
		}
		rule.HoldDown = c.dur(at(rb, "hold_down"), fr.HoldDown, 10*time.Minute)
		switch {
		case fr.Webhook != nil && len(fr.Command) > 0:
			c.p.Addf(rb, "give webhook or command, not both")
		case fr.Webhook != nil:
			e := *fr.Webhook
			if e.Name == "" {
				e.Name = "remediation-" + fr.Name
			}
			if wh := c.webhook(at(rb, "webhook"), e); wh != nil {
				rule.Action = WebhookAction{Hook: wh}
			}
		case len(fr.Command) > 0:
			if !strings.HasPrefix(fr.Command[0], "/") {
				c.p.Addf(at(rb, "command", 0), "%q: give an absolute path (commands never run through a shell or $PATH)", fr.Command[0])
			}
			rule.Action = CommandAction{Argv: fr.Command, Timeout: c.dur(at(rb, "timeout"), fr.Timeout, time.Minute)}
		default:
			c.p.Addf(rb, "an action is required: webhook or command")
		}
		rc.Rules = append(rc.Rules, rule)
	}
	return rc
}

func at(base []any, more ...any) []any { return append(append([]any(nil), base...), more...) }

// parseShare reads 25% or 0.25.
func parseShare(v string) (float64, error) {
	pct := strings.HasSuffix(v, "%")
	f, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
	if err != nil {
		return 0, fmt.Errorf("%q: want a share like 25%% or 0.25", v)
	}
	if pct {
		f /= 100
	}
	if !(f > 0 && f <= 1) || math.IsNaN(f) {
		return 0, fmt.Errorf("%q: must be in (0%%, 100%%]", v)
	}
	return f, nil
}
