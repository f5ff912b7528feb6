package server

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/meshlens/meshlens/internal/store"
	"github.com/meshlens/meshlens/internal/testkit"
)

// TestRemoteWriteConfig: every bad combination is refused with a message
// naming what is wrong; good ones give the forwarder its headers and
// external labels.
func TestRemoteWriteConfig(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	const u = "http://127.0.0.1:9090/api/v1/write"
	tests := []struct {
		name    string
		cfg     RemoteWriteConfig
		wantErr string
		auth    string // the Authorization header sent
	}{
		{"off", RemoteWriteConfig{}, "", ""},
		{"settings without a URL", RemoteWriteConfig{ExternalLabels: []string{"server=a"}}, "without --remote-write-url", ""},
		{"bearer token", RemoteWriteConfig{URL: u, BearerToken: "t0k"}, "", "Bearer t0k"},
		{"bearer token file", RemoteWriteConfig{URL: u, BearerTokenFile: token}, "", "Bearer s3cret"},
		{"basic auth", RemoteWriteConfig{URL: u, BasicAuthUsername: "m", BasicAuthPassword: "pw"}, "", "Basic " + base64.StdEncoding.EncodeToString([]byte("m:pw"))},
		{"basic auth password file", RemoteWriteConfig{URL: u, BasicAuthUsername: "m", BasicAuthPasswordFile: token}, "", "Basic " + base64.StdEncoding.EncodeToString([]byte("m:s3cret"))},
		{"two ways", RemoteWriteConfig{URL: u, BearerToken: "t", BasicAuthUsername: "m"}, "at most one of", ""},
		{"password twice", RemoteWriteConfig{URL: u, BasicAuthUsername: "m", BasicAuthPassword: "a", BasicAuthPasswordFile: token}, "exclusive", ""},
		{"password without user", RemoteWriteConfig{URL: u, BasicAuthPassword: "a"}, "needs --remote-write-basic-auth-username", ""},
		{"missing token file", RemoteWriteConfig{URL: u, BearerTokenFile: filepath.Join(dir, "nope")}, "nope", ""},
		{"empty token file", RemoteWriteConfig{URL: u, BearerTokenFile: empty}, "empty", ""},
		{"header without colon", RemoteWriteConfig{URL: u, Headers: []string{"X-Scope-OrgID fabric"}}, `want "Name: value"`, ""},
		{"bad header name", RemoteWriteConfig{URL: u, Headers: []string{"X Scope: a"}}, "not a valid header name", ""},
		{"reserved header", RemoteWriteConfig{URL: u, Headers: []string{"authorization: Bearer x"}}, "is set by meshlens", ""},
		{"header twice", RemoteWriteConfig{URL: u, Headers: []string{"X-A: 1", "x-a: 2"}}, "given twice", ""},
		{"label without value", RemoteWriteConfig{URL: u, ExternalLabels: []string{"server"}}, "want name=value", ""},
		{"bad label name", RemoteWriteConfig{URL: u, ExternalLabels: []string{"1server=a"}}, "not a valid label name", ""},
		{"reserved label name", RemoteWriteConfig{URL: u, ExternalLabels: []string{"__name__=a"}}, "not a valid label name", ""},
		{"label twice", RemoteWriteConfig{URL: u, ExternalLabels: []string{"server=a", "server=b"}}, "given twice", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.storeConfig(store.RemoteWriteConfig{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth == "" {
				if got.Client != nil {
					t.Errorf("a client with authentication, without any configured")
				}
				return
			}
			seen := make(chan string, 1)
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen <- r.Header.Get("Authorization") }))
			defer hs.Close()
			resp, err := got.Client.Get(hs.URL)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if a := <-seen; a != tc.auth {
				t.Errorf("Authorization %q, want %q", a, tc.auth)
			}
		})
	}
}

// TestTwoServersRemoteWriteToOnePrometheus: two servers write the same
// series to one real Prometheus (--web.enable-remote-write-receiver)
// through a proxy that checks their credentials and headers; their
// external labels keep the series apart, and a token file rotated while
// running is used from the next request on.
func TestTwoServersRemoteWriteToOnePrometheus(t *testing.T) {
	prom := startPrometheus(t, []string{"--web.enable-remote-write-receiver"})
	target, err := url.Parse(prom)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokenFile, passwordFile := filepath.Join(dir, "token"), filepath.Join(dir, "password")
	for p, v := range map[string]string{tokenFile: "token-a\n", passwordFile: "pw-b\n"} {
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu       sync.Mutex
		accepted = map[string]int{} // the Authorization values let through
		refused  []string
	)
	allowed := map[string]bool{
		"Bearer token-a": true, "Bearer token-a2": true,
		"Basic " + base64.StdEncoding.EncodeToString([]byte("server-b:pw-b")): true,
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		mu.Lock()
		ok := allowed[auth] && r.Header.Get("X-Scope-OrgID") == "fabric"
		if ok {
			accepted[auth]++
		} else {
			refused = append(refused, fmt.Sprintf("%q %q", auth, r.Header.Get("X-Scope-OrgID")))
		}
		mu.Unlock()
		if !ok {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer gateway.Close()
	write := gateway.URL + "/api/v1/write"
	a := startServer(t, "", func(c *Config, _ *running) {
		c.RemoteWrite = RemoteWriteConfig{URL: write, BearerTokenFile: tokenFile,
			Headers: []string{"X-Scope-OrgID: fabric"}, ExternalLabels: []string{"server=a", "site=lab"}}
		c.Store.RemoteWrite.FlushInterval = 50 * time.Millisecond
	})
	b := startServer(t, "", func(c *Config, _ *running) {
		c.RemoteWrite = RemoteWriteConfig{URL: write, BasicAuthUsername: "server-b", BasicAuthPasswordFile: passwordFile,
			Headers: []string{"X-Scope-OrgID: fabric"}, ExternalLabels: []string{"server=b", "site=lab"}}
		c.Store.RemoteWrite.FlushInterval = 50 * time.Millisecond
	})

	// The same series at the same time, as two servers aggregating one
	// fleet write it; its own "site" label wins over the external one.
	at := time.Now().Add(-time.Minute).UnixMilli()
	for i, r := range []*running{a, b} {
		app := r.s.store.Appender(context.Background())
		ls := labels.FromStrings("__name__", "meshlens_rack_pair_loss_ratio", "src_rack", "dc1-pod1-rack1", "dst_rack", "dc1-pod1-rack2", "proto", "tcp", "site", "own")
		if _, err := app.Append(0, ls, at, float64(i+1)/100); err != nil {
			t.Fatal(err)
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	query := func(expr string) string {
		var res struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		}
		getData(t, prom+"/api/v1/query?"+url.Values{"query": {expr}, "time": {fmt.Sprint(time.Now().Unix())}}.Encode(), "", &res)
		var out []string
		for _, s := range res.Result {
			out = append(out, fmt.Sprintf("server=%s site=%s %v", s.Metric["server"], s.Metric["site"], s.Value[1]))
		}
		return strings.Join(out, "; ")
	}
	const want = "server=a site=own 0.01; server=b site=own 0.02"
	testkit.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if got := query(`sort(meshlens_rack_pair_loss_ratio)`); got != want {
			mu.Lock()
			defer mu.Unlock()
			return fmt.Errorf("prometheus holds %q, want %q (refused: %v)", got, want, refused)
		}
		return nil
	})

	// The token is rotated: the next request carries the new one.
	if err := os.WriteFile(tokenFile, []byte("token-a2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	app := a.s.store.Appender(context.Background())
	if _, err := app.Append(0, labels.FromStrings("__name__", "meshlens_slo_sli_ratio", "slo", "x"), time.Now().Add(-30*time.Second).UnixMilli(), 0.999); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	testkit.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if got := query(`meshlens_slo_sli_ratio`); got != "server=a site=lab 0.999" {
			return fmt.Errorf("prometheus holds %q", got)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if accepted["Bearer token-a2"] == 0 || len(refused) > 0 {
		t.Errorf("accepted %v, refused %v", accepted, refused)
	}
}
