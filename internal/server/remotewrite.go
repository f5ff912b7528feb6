package server

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/meshlens/meshlens/internal/store"
	"github.com/meshlens/meshlens/internal/yamlfile"
)

// RemoteWriteConfig is what a shared remote-write receiver needs from
// this server: where it is, how to authenticate to it, and the external
// labels that keep this server's series apart from another's.
type RemoteWriteConfig struct {
	// URL of the receiver; empty: no remote write.
	URL string
	// One way to authenticate at most: a bearer token (given, or read from
	// a file at every request, so that it can be rotated), or basic auth
	// (the password given or read from a file likewise).
	BearerToken, BearerTokenFile                                string
	BasicAuthUsername, BasicAuthPassword, BasicAuthPasswordFile string
	// Headers are added to every request, "Name: value" (e.g.
	// "X-Scope-OrgID: fabric" for Mimir).
	Headers []string
	// ExternalLabels, "name=value", are added to every series sent that
	// lacks the label (as Prometheus's external_labels).
	ExternalLabels []string
}

// reservedHeaders are set by the remote-write protocol or by the
// authentication settings: a header may not override them.
var reservedHeaders = map[string]bool{
	"Authorization": true, "Content-Encoding": true, "Content-Type": true, "Content-Length": true,
	"User-Agent": true, "X-Prometheus-Remote-Write-Version": true, "Host": true,
}

// storeConfig checks c and turns it into the store's forwarder settings
// over base (queue and timing tunables).
func (c RemoteWriteConfig) storeConfig(base store.RemoteWriteConfig) (store.RemoteWriteConfig, error) {
	out := base
	out.URL = c.URL
	if c.URL == "" {
		if c.BearerToken != "" || c.BearerTokenFile != "" || c.BasicAuthUsername != "" || c.BasicAuthPassword != "" ||
			c.BasicAuthPasswordFile != "" || len(c.Headers) > 0 || len(c.ExternalLabels) > 0 {
			return out, errors.New("server: --remote-write-* settings without --remote-write-url")
		}
		return out, nil
	}
	ways := 0
	for _, set := range []bool{c.BearerToken != "", c.BearerTokenFile != "", c.BasicAuthUsername != "" || c.BasicAuthPassword != "" || c.BasicAuthPasswordFile != ""} {
		if set {
			ways++
		}
	}
	if ways > 1 {
		return out, errors.New("server: remote write: at most one of --remote-write-bearer-token, --remote-write-bearer-token-file and --remote-write-basic-auth-*")
	}
	if c.BasicAuthPassword != "" && c.BasicAuthPasswordFile != "" {
		return out, errors.New("server: remote write: --remote-write-basic-auth-password and --remote-write-basic-auth-password-file are exclusive")
	}
	if (c.BasicAuthPassword != "" || c.BasicAuthPasswordFile != "") && c.BasicAuthUsername == "" {
		return out, errors.New("server: remote write: a basic auth password needs --remote-write-basic-auth-username")
	}
	if strings.ContainsAny(c.BearerToken, "\r\n") {
		return out, errors.New("server: remote write: the bearer token holds a line break")
	}
	out.Headers = map[string]string{}
	for k, v := range base.Headers {
		out.Headers[k] = v
	}
	for _, h := range c.Headers {
		name, value, ok := strings.Cut(h, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		switch {
		case !ok || name == "":
			return out, fmt.Errorf("server: remote write header %q: want \"Name: value\"", h)
		case !validHeaderName(name):
			return out, fmt.Errorf("server: remote write header %q: %q is not a valid header name", h, name)
		case strings.ContainsAny(value, "\r\n"):
			return out, fmt.Errorf("server: remote write header %q: the value holds a line break", name)
		case reservedHeaders[http.CanonicalHeaderKey(name)]:
			return out, fmt.Errorf("server: remote write header %q is set by meshlens (for credentials use --remote-write-bearer-token-file or --remote-write-basic-auth-*)", name)
		}
		if _, dup := out.Headers[http.CanonicalHeaderKey(name)]; dup {
			return out, fmt.Errorf("server: remote write header %q given twice", name)
		}
		out.Headers[http.CanonicalHeaderKey(name)] = value
	}
	b := labels.NewScratchBuilder(len(c.ExternalLabels))
	seen := map[string]bool{}
	for _, l := range c.ExternalLabels {
		name, value, ok := strings.Cut(l, "=")
		switch {
		case !ok || value == "":
			return out, fmt.Errorf("server: remote write external label %q: want name=value, the value not empty", l)
		case !model.LegacyValidation.IsValidLabelName(name) || strings.HasPrefix(name, "__"):
			return out, fmt.Errorf("server: remote write external label %q: %q is not a valid label name (letters, digits, '_', not starting with a digit or \"__\")", l, name)
		case seen[name]:
			return out, fmt.Errorf("server: remote write external label %q given twice", name)
		}
		seen[name] = true
		b.Add(name, value)
	}
	b.Sort()
	out.ExternalLabels = b.Labels()

	auth, err := c.authorization()
	if err != nil {
		return out, err
	}
	if auth != nil {
		// Checked now, so that a wrong path fails the start, not the
		// first send an hour later.
		if _, err := auth(); err != nil {
			return out, err
		}
		client := base.Client
		if client == nil {
			timeout := base.Timeout
			if timeout <= 0 {
				timeout = store.DefaultRemoteWriteTimeout
			}
			client = &http.Client{Timeout: timeout}
		}
		authed := *client
		next := client.Transport
		if next == nil {
			next = http.DefaultTransport
		}
		authed.Transport = authTransport{next: next, authorization: auth}
		out.Client = &authed
	}
	return out, nil
}

// authorization returns what makes the Authorization header, nil
// without authentication.
func (c RemoteWriteConfig) authorization() (func() (string, error), error) {
	switch {
	case c.BearerToken != "":
		return func() (string, error) { return "Bearer " + c.BearerToken, nil }, nil
	case c.BearerTokenFile != "":
		return func() (string, error) {
			tok, err := readSecret(c.BearerTokenFile)
			if err != nil {
				return "", fmt.Errorf("server: remote write bearer token: %w", err)
			}
			return "Bearer " + tok, nil
		}, nil
	case c.BasicAuthUsername != "":
		if strings.Contains(c.BasicAuthUsername, ":") {
			return nil, fmt.Errorf("server: remote write basic auth username %q holds a ':'", c.BasicAuthUsername)
		}
		return func() (string, error) {
			pw := c.BasicAuthPassword
			if c.BasicAuthPasswordFile != "" {
				var err error
				if pw, err = readSecret(c.BasicAuthPasswordFile); err != nil {
					return "", fmt.Errorf("server: remote write basic auth password: %w", err)
				}
			}
			return "Basic " + base64.StdEncoding.EncodeToString([]byte(c.BasicAuthUsername+":"+pw)), nil
		}, nil
	}
	return nil, nil
}

// readSecret reads a one-line secret file, without its final line break.
func readSecret(path string) (string, error) {
	data, err := yamlfile.ReadFile(path, 64<<10)
	if err != nil {
		return "", err
	}
	s := string(bytes.TrimRight(data, "\r\n"))
	switch {
	case s == "":
		return "", fmt.Errorf("%s: empty", path)
	case strings.ContainsAny(s, "\r\n"):
		return "", fmt.Errorf("%s: more than one line", path)
	}
	return s, nil
}

// authTransport sets the Authorization header of every request.
type authTransport struct {
	next          http.RoundTripper
	authorization func() (string, error)
}

func (t authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	v, err := t.authorization()
	if err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", v)
	return t.next.RoundTrip(r)
}

func validHeaderName(name string) bool {
	for _, c := range name {
		if c > 0x7e || c <= ' ' || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", c) {
			return false
		}
	}
	return true
}
