package bus

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzCheckURLs: whatever the URL list, the check never panics, and a list
// it lets through in plaintext names only loopback hosts.
func FuzzCheckURLs(f *testing.F) {
	for _, s := range []string{"nats://127.0.0.1:4222", "nats://a:1,nats://10.0.0.1:2", "tls://x:1", "localhost:4222", "[::1]:4222", "%zz", "nats://[::1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, urls string) {
		if err := CheckURLs("--nats-url", urls, false, false); err != nil {
			return
		}
		for _, raw := range strings.Split(urls, ",") {
			raw = strings.TrimSpace(raw)
			if raw == "" {
				continue
			}
			if !strings.Contains(raw, "://") {
				raw = "nats://" + raw
			}
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatalf("%q accepted but does not parse: %v", raw, err)
			}
			if u.Scheme != "tls" && !IsLoopback(u.Hostname()) {
				t.Fatalf("%q accepted in plaintext off loopback", raw)
			}
		}
	})
}

// FuzzAgentPermissions: a host name the check accepts yields permissions
// that stay within that host's subjects: no wildcard or extra token comes
// from the name.
func FuzzAgentPermissions(f *testing.F) {
	for _, s := range []string{"dc1-pod1-rack1-h01", "a.b", "*", ">", "$SYS", "h 1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		if CheckHostName(host) != nil {
			return
		}
		pub, sub := AgentPermissions(host)
		if pub[0] != ResultsSubjectPrefix+".*."+host || strings.Count(pub[0], ".") != 3 {
			t.Fatalf("results permission %q", pub[0])
		}
		if len(sub) != 1 || sub[0] != AgentInboxRoot+"."+host+".>" || strings.Count(sub[0], ".") != 3 {
			t.Fatalf("inbox permission %q", sub)
		}
		// Same shape as for a plain name: the host fills exactly the
		// tokens the placeholder filled, and adds none.
		const placeholder = "HOSTPLACEHOLDER"
		refPub, _ := AgentPermissions(placeholder)
		for i, s := range pub {
			got, ref := strings.Split(s, "."), strings.Split(refPub[i], ".")
			if len(got) != len(ref) {
				t.Fatalf("host %q: %q has %d tokens, want %d", host, s, len(got), len(ref))
			}
			for j := range ref {
				if want := strings.ReplaceAll(ref[j], placeholder, host); got[j] != want {
					t.Fatalf("host %q: %q token %d = %q, want %q", host, s, j, got[j], want)
				}
			}
		}
	})
}
