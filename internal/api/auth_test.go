package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

const (
	viewerSecret   = "viewer-secret-0123456789"
	operatorSecret = "operator-secret-0123456789"
	adminSecret    = "admin-secret-0123456789"
)

func testTokens(t *testing.T) []Token {
	t.Helper()
	file := "- {name: grafana, role: viewer, sha256: " + HashToken(viewerSecret) + "}\n" +
		"- name: oncall\n  role: operator\n  sha256: " + HashToken(operatorSecret) + "\n" +
		"- {name: root, role: admin, sha256: " + HashToken(adminSecret) + "}\n"
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := LoadTokens(path)
	if err != nil {
		t.Fatalf("LoadTokens: %v", err)
	}
	if len(tokens) != 3 {
		t.Fatalf("LoadTokens: %d tokens, want 3", len(tokens))
	}
	return tokens
}

func TestAuthRoles(t *testing.T) {
	var audit bytes.Buffer
	s := newTestServer(t, Config{Tokens: testTokens(t), AuditLog: &audit}, Sources{Store: newTestStore(t)})
	// A mutating route of another package, registered the way it would be.
	s.Handle("POST /api/v1/silences", RoleOperator, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := PrincipalFrom(r.Context())
		writeData(w, map[string]string{"by": p.Name}, nil, nil)
	}))
	tests := []struct {
		name     string
		call     call
		wantCode int
	}{
		{"no token", call{path: "/api/v1/labels"}, 401},
		{"bad token", call{path: "/api/v1/labels", token: "nope"}, 401},
		{"viewer reads", call{path: "/api/v1/labels", token: viewerSecret}, 200},
		{"viewer reads metrics", call{path: "/metrics", token: viewerSecret}, 200},
		{"viewer may not act", call{method: "POST", path: "/api/v1/silences", token: viewerSecret}, 403},
		{"operator acts", call{method: "POST", path: "/api/v1/silences", token: operatorSecret}, 200},
		{"unauthenticated act", call{method: "POST", path: "/api/v1/silences"}, 401},
		{"operator may not read audit", call{path: "/api/v1/audit", token: operatorSecret}, 403},
		{"admin reads audit", call{path: "/api/v1/audit", token: adminSecret}, 200},
		{"operator may not profile", call{path: "/debug/pprof/heap", token: operatorSecret}, 403},
		{"admin reads the heap profile", call{path: "/debug/pprof/heap", token: adminSecret}, 200},
		{"admin lists the profiles", call{path: "/debug/pprof/", token: adminSecret}, 200},
		{"health needs no token", call{path: "/healthz"}, 200},
		{"readiness needs no token", call{path: "/readyz"}, 200},
		{"query by POST is not audited", call{method: "POST", path: "/api/v1/query", token: viewerSecret, form: map[string][]string{"query": {"1"}}}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, hdr := tc.call.do(t, s.url)
			if code != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", code, tc.wantCode, body)
			}
			if code == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer")
			}
		})
	}

	// Three mutating calls were made: denied (viewer), done (operator), denied (no token).
	_, body, _ := call{path: "/api/v1/audit", token: adminSecret}.do(t, s.url)
	var got struct {
		Data []AuditEntry `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		who    string
		status int
	}{{"grafana", 403}, {"oncall", 200}, {"unauthenticated", 401}}
	if len(got.Data) != len(want) {
		t.Fatalf("audit has %d entries, want %d: %s", len(got.Data), len(want), body)
	}
	for i, w := range want {
		if e := got.Data[i]; e.Principal != w.who || e.Status != w.status || e.Path != "/api/v1/silences" || e.Method != "POST" {
			t.Errorf("audit[%d] = %+v, want %s %d", i, e, w.who, w.status)
		}
	}
	lines := strings.Split(strings.TrimSpace(audit.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("audit log has %d lines, want 3:\n%s", len(lines), audit.String())
	}
	for _, secret := range []string{viewerSecret, operatorSecret, adminSecret} {
		if strings.Contains(audit.String(), secret) {
			t.Fatal("audit log contains a token")
		}
	}
	if got := testutil.ToFloat64(s.metrics.denied.WithLabelValues("forbidden")); got != 3 {
		t.Errorf("forbidden denials = %v, want 3", got)
	}
}

func TestAnonymousViewer(t *testing.T) {
	s := newTestServer(t, Config{Tokens: testTokens(t), AllowAnonymous: RoleViewer}, Sources{Store: newTestStore(t)})
	s.Handle("POST /api/v1/silences", RoleOperator, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeData(w, "ok", nil, nil)
	}))
	tests := []struct {
		name     string
		call     call
		wantCode int
	}{
		{"anonymous reads", call{path: "/api/v1/labels"}, 200},
		{"anonymous may not act", call{method: "POST", path: "/api/v1/silences"}, 403},
		{"a bad token is still refused", call{path: "/api/v1/labels", token: "wrong"}, 401},
		{"operator acts", call{method: "POST", path: "/api/v1/silences", token: operatorSecret}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, body, _ := tc.call.do(t, s.url); code != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", code, tc.wantCode, body)
			}
		})
	}
}

func TestParseTokensErrors(t *testing.T) {
	good := HashToken("x")
	tests := []struct {
		name string
		file string
		want string // substring of the error
	}{
		{"not a list", "name: x\n", "tokens.yaml:1: want a list"},
		{"unknown key", "- {name: a, role: viewer, sha256: " + good + ", extra: 1}\n", "tokens.yaml:1"},
		{"unknown role", "- {name: a, role: god, sha256: " + good + "}\n", "field role"},
		{"short hash", "- {name: a, role: viewer, sha256: abc}\n", "field sha256"},
		{"missing name", "- {role: viewer, sha256: " + good + "}\n", "field name"},
		{"duplicate name", "- {name: a, role: viewer, sha256: " + good + "}\n- {name: a, role: admin, sha256: " + HashToken("y") + "}\n", "tokens.yaml:2: field name"},
		{"duplicate token", "- {name: a, role: viewer, sha256: " + good + "}\n- {name: b, role: admin, sha256: " + good + "}\n", "same token as line 1"},
		{"bad yaml", "- {name: [\n", "tokens.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTokens([]byte(tc.file), "tokens.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if toks, err := ParseTokens(nil, "empty.yaml"); err != nil || len(toks) != 0 {
		t.Errorf("empty file: %v, %v", toks, err)
	}
}

func TestGenerateToken(t *testing.T) {
	a, err := GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateToken()
	if len(a) != 64 || a == b {
		t.Fatalf("tokens %q %q", a, b)
	}
}

func FuzzParseTokens(f *testing.F) {
	f.Add([]byte("- {name: a, role: viewer, sha256: " + HashToken("x") + "}\n"))
	f.Add([]byte("[]"))
	f.Add([]byte("- name: a\n  role: admin\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		toks, err := ParseTokens(b, "fuzz.yaml")
		if err != nil {
			return
		}
		for _, tok := range toks {
			if tok.Name == "" || tok.Role <= RoleNone || tok.Role > RoleAdmin {
				t.Fatalf("accepted invalid token %+v", tok)
			}
		}
	})
}
