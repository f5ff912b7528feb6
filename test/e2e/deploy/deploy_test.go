// Package deploy checks the deployment files as shipped: every Kubernetes
// manifest document decoded and held to what docs/deployment.md promises,
// every MESHLENS_* variable a real flag of the binary, and the systemd
// units and sysusers file run through systemd's own tools.
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// The subset of the Kubernetes API the checks read; unknown fields are
// allowed (the decoder is not strict), misspelt ones show as missing.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   meta   `yaml:"metadata"`
	Spec       spec   `yaml:"spec"`
	file       string
}

type meta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type spec struct {
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	// Service: a plain map selector.
	ServiceSelector map[string]string `yaml:"-"`
	Ports           []struct {
		Name string `yaml:"name"`
		Port int    `yaml:"port"`
	} `yaml:"ports"`
	Template struct {
		Metadata meta    `yaml:"metadata"`
		Spec     podSpec `yaml:"spec"`
	} `yaml:"template"`
	VolumeClaimTemplates []struct {
		Metadata meta `yaml:"metadata"`
	} `yaml:"volumeClaimTemplates"`
	// ServiceMonitor / PodMonitor.
	Endpoints           []endpoint `yaml:"endpoints"`
	PodMetricsEndpoints []endpoint `yaml:"podMetricsEndpoints"`
}

type endpoint struct {
	Port string `yaml:"port"`
	Path string `yaml:"path"`
}

type podSpec struct {
	HostNetwork     bool           `yaml:"hostNetwork"`
	SecurityContext map[string]any `yaml:"securityContext"`
	Containers      []container    `yaml:"containers"`
	Volumes         []volume       `yaml:"volumes"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom struct {
			FieldRef struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports          []containerPort `yaml:"ports"`
	LivenessProbe  *probe          `yaml:"livenessProbe"`
	ReadinessProbe *probe          `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		Privileged               bool  `yaml:"privileged"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
	} `yaml:"secret"`
	HostPath *struct {
		Path string `yaml:"path"`
	} `yaml:"hostPath"`
}

func (c container) env(name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// mountOf is the volume mounted at path or at its longest prefix.
func (c container) mountOf(path string) (name, at string, readOnly bool) {
	for _, m := range c.VolumeMounts {
		if (path == m.MountPath || strings.HasPrefix(path, m.MountPath+"/")) && len(m.MountPath) > len(at) {
			name, at, readOnly = m.Name, m.MountPath, m.ReadOnly
		}
	}
	return name, at, readOnly
}

func (p podSpec) volume(name string) *volume {
	for i := range p.Volumes {
		if p.Volumes[i].Name == name {
			return &p.Volumes[i]
		}
	}
	return nil
}

// loadManifests decodes every document of every YAML file in dir.
func loadManifests(t *testing.T, dir string) []object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	var out []object
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var raw map[string]any
			err := dec.Decode(&raw)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			b, _ := yaml.Marshal(raw)
			var o object
			if err := yaml.Unmarshal(b, &o); err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			if o.Kind == "Service" {
				sel, _ := raw["spec"].(map[string]any)["selector"].(map[string]any)
				o.Spec.ServiceSelector = map[string]string{}
				for k, v := range sel {
					o.Spec.ServiceSelector[k] = fmt.Sprint(v)
				}
			}
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				t.Errorf("%s: document %d lacks apiVersion, kind or metadata.name", f, i)
			}
			o.file = filepath.Base(f)
			out = append(out, o)
		}
	}
	return out
}

// flagsOf lists the flags of a subcommand from its --help.
func flagsOf(t *testing.T, bin string, sub ...string) map[string]bool {
	t.Helper()
	out, err := exec.Command(bin, append(sub, "--help")...).CombinedOutput()
	if err != nil {
		t.Fatalf("meshlens %s --help: %v\n%s", strings.Join(sub, " "), err, out)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	return flags
}

// checkEnvIsFlag: MESHLENS_X_Y must be a flag --x-y of the subcommand,
// or the variable is silently ignored.
func checkEnvIsFlag(t *testing.T, where, env string, flags map[string]bool) {
	t.Helper()
	name, ok := strings.CutPrefix(env, "MESHLENS_")
	if !ok {
		return
	}
	if flag := strings.ToLower(strings.ReplaceAll(name, "_", "-")); !flags[flag] {
		t.Errorf("%s: %s is no flag (--%s) of the command: it would be ignored", where, env, flag)
	}
}

func TestKubernetesManifests(t *testing.T) {
	root := e2eutil.RepoRoot(t)
	bin := e2eutil.Binary(t)
	objs := loadManifests(t, filepath.Join(root, "deploy", "kubernetes"))
	byKind := map[string][]object{}
	for _, o := range objs {
		byKind[o.Kind] = append(byKind[o.Kind], o)
		if o.Kind != "Namespace" && o.Metadata.Namespace != "meshlens" {
			t.Errorf("%s %s/%s is not in namespace meshlens", o.file, o.Kind, o.Metadata.Name)
		}
	}
	for _, kind := range []string{"Namespace", "DaemonSet", "StatefulSet", "Service", "ServiceMonitor", "PodMonitor"} {
		if len(byKind[kind]) != 1 {
			t.Fatalf("%d %s documents, want 1", len(byKind[kind]), kind)
		}
	}
	ds, sts, svc := byKind["DaemonSet"][0], byKind["StatefulSet"][0], byKind["Service"][0]

	for _, w := range []struct {
		o     object
		flags map[string]bool
	}{{ds, flagsOf(t, bin, "agent")}, {sts, flagsOf(t, bin, "server")}} {
		pod := w.o.Spec.Template.Spec
		where := w.o.file + " " + w.o.Kind
		if len(pod.Containers) != 1 {
			t.Fatalf("%s: %d containers, want 1", where, len(pod.Containers))
		}
		c := pod.Containers[0]
		if !labelsMatch(w.o.Spec.Selector.MatchLabels, w.o.Spec.Template.Metadata.Labels) {
			t.Errorf("%s: selector %v does not select its pods %v", where, w.o.Spec.Selector.MatchLabels, w.o.Spec.Template.Metadata.Labels)
		}
		volumes := map[string]bool{}
		for _, v := range pod.Volumes {
			volumes[v.Name] = true
		}
		for _, c := range w.o.Spec.VolumeClaimTemplates {
			volumes[c.Metadata.Name] = true
		}
		for _, e := range c.Env {
			checkEnvIsFlag(t, where, e.Name, w.flags)
			// Every file a variable names is on a volume the pod has.
			if v := e.Value; strings.HasPrefix(v, "/") {
				if name, _, _ := c.mountOf(v); !volumes[name] {
					t.Errorf("%s: %s=%s is on no volume", where, e.Name, v)
				}
			}
		}
		if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["cpu"] == "" || c.Resources.Limits["memory"] == "" {
			t.Errorf("%s: requests and limits of cpu and memory must all be set: %+v", where, c.Resources)
		}
		sc := c.SecurityContext
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !sc.ReadOnlyRootFilesystem || sc.Privileged {
			t.Errorf("%s: want allowPrivilegeEscalation false, readOnlyRootFilesystem true, not privileged: %+v", where, sc)
		}
		if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
			t.Errorf("%s: capabilities drop %v, want [ALL]", where, sc.Capabilities.Drop)
		}
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("%s: want liveness /healthz and readiness /readyz", where)
		}
		for _, p := range []*probe{c.LivenessProbe, c.ReadinessProbe} {
			if p != nil && !slices.ContainsFunc(c.Ports, func(cp containerPort) bool { return cp.Name == p.HTTPGet.Port }) {
				t.Errorf("%s: probe port %q is no container port", where, p.HTTPGet.Port)
			}
		}
	}

	// The agent: one per node, named by its node, scrapeable, NET_RAW only.
	pod := ds.Spec.Template.Spec
	agent := pod.Containers[0]
	if !pod.HostNetwork {
		t.Error("agent: not on the host network: probes would leave from the pod's address")
	}
	if len(agent.Args) == 0 || agent.Args[0] != "agent" {
		t.Errorf("agent: args %v", agent.Args)
	}
	hostFromNode := false
	for _, e := range agent.Env {
		hostFromNode = hostFromNode || e.Name == "MESHLENS_HOST" && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	}
	if !hostFromNode {
		t.Error("agent: MESHLENS_HOST is not the node's name (spec.nodeName)")
	}
	if !slices.Equal(agent.SecurityContext.Capabilities.Add, []string{"NET_RAW"}) {
		t.Errorf("agent: capabilities add %v, want [NET_RAW] only", agent.SecurityContext.Capabilities.Add)
	}
	addr, _ := agent.env("MESHLENS_METRICS_ADDR")
	metricsPort := 0
	for _, p := range agent.Ports {
		if p.Name == "metrics" {
			metricsPort = p.ContainerPort
		}
	}
	if host, port, ok := strings.Cut(addr, ":"); !ok || strings.HasPrefix(host, "127.") || host == "localhost" || port != fmt.Sprint(metricsPort) {
		t.Errorf("agent: MESHLENS_METRICS_ADDR %q must be reachable by a scraper, on the metrics port %d", addr, metricsPort)
	}
	if ds.Spec.Template.Metadata.Annotations["prometheus.io/port"] != fmt.Sprint(metricsPort) {
		t.Errorf("agent: prometheus.io/port annotation %q, metrics port %d", ds.Spec.Template.Metadata.Annotations["prometheus.io/port"], metricsPort)
	}
	creds, _ := agent.env("MESHLENS_CREDS")
	if name, _, ro := agent.mountOf(creds); pod.volume(name) == nil || pod.volume(name).Secret == nil || !ro {
		t.Errorf("agent: credentials %q not from a Secret mounted read-only", creds)
	}
	if !strings.Contains(creds, "$(MESHLENS_HOST)") {
		t.Errorf("agent: credentials %q are not the node's own", creds)
	}

	// The server: non-root, Secrets for secrets, topology from a ConfigMap.
	pod = sts.Spec.Template.Spec
	server := pod.Containers[0]
	if pod.SecurityContext["runAsNonRoot"] != true || server.SecurityContext.Capabilities.Add != nil {
		t.Errorf("server: want runAsNonRoot and no capability added: %v %+v", pod.SecurityContext, server.SecurityContext.Capabilities)
	}
	for env, want := range map[string]string{"MESHLENS_TOKENS_FILE": "secret", "MESHLENS_TLS_KEY": "secret", "MESHLENS_NATS_TLS_KEY": "secret", "MESHLENS_TOPOLOGY": "configMap"} {
		path, _ := server.env(env)
		name, _, ro := server.mountOf(path)
		v := pod.volume(name)
		if v == nil || !ro || (want == "secret") != (v.Secret != nil) || (want == "configMap") != (v.ConfigMap != nil) {
			t.Errorf("server: %s=%q is not on a read-only %s volume", env, path, want)
		}
	}
	if !labelsMatch(svc.Spec.ServiceSelector, sts.Spec.Template.Metadata.Labels) {
		t.Errorf("Service selector %v does not select the server's pods", svc.Spec.ServiceSelector)
	}
	svcPorts := map[string]bool{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = true
	}
	sm, pm := byKind["ServiceMonitor"][0], byKind["PodMonitor"][0]
	if !labelsMatch(sm.Spec.Selector.MatchLabels, svc.Metadata.Labels) || len(sm.Spec.Endpoints) == 0 || !svcPorts[sm.Spec.Endpoints[0].Port] || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor does not scrape /metrics of the Service's ports %v: %+v", svcPorts, sm.Spec)
	}
	if !labelsMatch(pm.Spec.Selector.MatchLabels, ds.Spec.Template.Metadata.Labels) || len(pm.Spec.PodMetricsEndpoints) == 0 || pm.Spec.PodMetricsEndpoints[0].Port != "metrics" {
		t.Errorf("PodMonitor does not scrape the agents' metrics port: %+v", pm.Spec)
	}

	// kustomization.yaml names files that exist.
	k, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kust struct {
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(k, &kust); err != nil || len(kust.Resources) == 0 {
		t.Fatalf("kustomization.yaml: %v %v", err, kust)
	}
	for _, r := range kust.Resources {
		if _, err := os.Stat(filepath.Join(root, "deploy", "kubernetes", r)); err != nil {
			t.Errorf("kustomization.yaml: %v", err)
		}
	}
}

// labelsMatch: every selector label is on the object.
func labelsMatch(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// unitSettings reads a unit's Key=Value lines (repeated keys kept in order).
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "[") {
			out[k] = append(out[k], v)
		}
	}
	return out
}

func TestSystemdUnits(t *testing.T) {
	e2eutil.Require(t, "systemd-analyze", "systemd-sysusers")
	root := e2eutil.RepoRoot(t)
	bin := e2eutil.Binary(t)
	dir := filepath.Join(root, "deploy", "systemd")
	tmp := t.TempDir()
	for _, tc := range []struct {
		unit, sub string
		secrets   []string // variables that must come from LoadCredential
	}{
		{"meshlens-agent.service", "agent", []string{"MESHLENS_CREDS"}},
		{"meshlens-server.service", "server", []string{"MESHLENS_TOKENS_FILE", "MESHLENS_TLS_KEY", "MESHLENS_NATS_TLS_KEY"}},
	} {
		s := unitSettings(t, filepath.Join(dir, tc.unit))
		flags := flagsOf(t, bin, tc.sub)
		env := map[string]string{}
		for _, e := range s["Environment"] {
			k, v, _ := strings.Cut(e, "=")
			env[k] = v
			checkEnvIsFlag(t, tc.unit, k, flags)
		}
		creds := map[string]bool{}
		for _, lc := range s["LoadCredential"] {
			id, _, _ := strings.Cut(lc, ":")
			creds[id] = true
		}
		for _, v := range tc.secrets {
			id, ok := strings.CutPrefix(env[v], "%d/")
			if !ok || !creds[id] {
				t.Errorf("%s: %s=%q is not a LoadCredential= credential (%%d/ID)", tc.unit, v, env[v])
			}
		}
		if got := s["ProtectSystem"]; !slices.Equal(got, []string{"strict"}) {
			t.Errorf("%s: ProtectSystem=%v, want strict", tc.unit, got)
		}
		if len(s["StateDirectory"]) == 0 {
			t.Errorf("%s: no StateDirectory: nothing is writable under ProtectSystem=strict", tc.unit)
		}
		// systemd-analyze verify, with ExecStart pointed at the built
		// binary (it checks the command exists); it exits 0 on a bad
		// directive, so any line naming the unit fails.
		data, err := os.ReadFile(filepath.Join(dir, tc.unit))
		if err != nil {
			t.Fatal(err)
		}
		copyPath := filepath.Join(tmp, tc.unit)
		if err := os.WriteFile(copyPath, bytes.ReplaceAll(data, []byte("/usr/local/bin/meshlens"), []byte(bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("systemd-analyze", "verify", "--man=no", copyPath).CombinedOutput()
		if err != nil || bytes.Contains(out, []byte(tc.unit)) {
			t.Errorf("systemd-analyze verify %s: %v\n%s", tc.unit, err, out)
		}
	}
	// The agent's user is dynamic; the server's comes from sysusers.d.
	if s := unitSettings(t, filepath.Join(dir, "meshlens-agent.service")); !slices.Equal(s["DynamicUser"], []string{"yes"}) || !slices.Equal(s["AmbientCapabilities"], []string{"CAP_NET_RAW"}) || !slices.Equal(s["CapabilityBoundingSet"], []string{"CAP_NET_RAW"}) {
		t.Errorf("agent unit: want DynamicUser=yes and CAP_NET_RAW alone: %v %v %v", s["DynamicUser"], s["AmbientCapabilities"], s["CapabilityBoundingSet"])
	}
	user := unitSettings(t, filepath.Join(dir, "meshlens-server.service"))["User"]
	sysroot := t.TempDir()
	if err := os.MkdirAll(filepath.Join(sysroot, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-sysusers", "--root", sysroot, filepath.Join(dir, "meshlens.sysusers")).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, err := os.ReadFile(filepath.Join(sysroot, "etc", "passwd"))
	if err != nil || len(user) != 1 || !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(user[0])+`:x:\d+:\d+:[^:]*:[^:]*:/usr/sbin/nologin$`).Match(passwd) {
		t.Errorf("sysusers does not create the server unit's User=%v as a system user without a shell: %v\n%s", user, err, passwd)
	}
}
