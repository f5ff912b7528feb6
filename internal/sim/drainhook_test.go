package sim

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/meshlens/meshlens/internal/alert"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/topology"
)

// TestDrainHook: the webhook a remediation rule posts drains and undrains
// switches and switch links; a host, an access link, an unknown element
// or action, a bad or missing signature, or anything but a POST of the
// action's JSON changes nothing.
func TestDrainHook(t *testing.T) {
	topo, err := topology.Generate(topology.GenSpec{DCs: 1, Pods: 1, RacksPerPod: 2, HostsPerRack: 2, LeavesPerPod: 2, Spines: 2})
	if err != nil {
		t.Fatal(err)
	}
	x, err := localize.NewIndex(topo)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("hook secret of some length")
	h := NewDrainHook(x, secret)
	post := func(method, body, sig string) int {
		req := httptest.NewRequest(method, "/drain", strings.NewReader(body))
		if sig != "" {
			req.Header.Set(alert.SignatureHeader, sig)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	signed := func(body string) string { return alert.Sign(secret, []byte(body)) }
	action := func(a, el string) string { return `{"action":"` + a + `","element":"` + el + `","kind":"link"}` }
	steps := []struct {
		name    string
		method  string
		body    string
		sig     string
		code    int
		drained []string
	}{
		{"drain a spine link", "POST", action("drain", "dc1-spine1--dc1-pod1-leaf2"), "", 200, []string{"dc1-pod1-leaf2--dc1-spine1"}},
		{"again: no change", "POST", action("drain", "dc1-pod1-leaf2->dc1-spine1"), "", 200, []string{"dc1-pod1-leaf2--dc1-spine1"}},
		{"drain a switch", "POST", action("drain", "dc1-spine2"), "", 200, []string{"dc1-pod1-leaf2--dc1-spine1", "dc1-spine2"}},
		{"a host", "POST", action("drain", "dc1-pod1-rack1-h01"), "", 400, nil},
		{"an access link", "POST", action("drain", "dc1-pod1-rack1-h01--dc1-pod1-rack1-tor"), "", 400, nil},
		{"unknown", "POST", action("drain", "dc9-spine1"), "", 400, nil},
		{"unknown action", "POST", action("reboot", "dc1-spine2"), "", 400, nil},
		{"unknown field", "POST", `{"action":"undrain","element":"dc1-spine2","kind":"device","why":1}`, "", 400, nil},
		{"unsigned", "POST", action("undrain", "dc1-spine2"), "none", 401, nil},
		{"wrongly signed", "POST", action("undrain", "dc1-spine2"), alert.Sign([]byte("other secret, as long"), []byte(action("undrain", "dc1-spine2"))), 401, nil},
		{"not a POST", "GET", "", "none", 405, nil},
		{"undrain", "POST", action("undrain", "dc1-spine2"), "", 200, []string{"dc1-pod1-leaf2--dc1-spine1"}},
	}
	version := uint64(0)
	want := []string{}
	for _, st := range steps {
		sig := st.sig
		switch sig {
		case "":
			sig = signed(st.body)
		case "none":
			sig = ""
		}
		if code := post(st.method, st.body, sig); code != st.code {
			t.Fatalf("%s: status %d, want %d", st.name, code, st.code)
		}
		if st.drained != nil {
			want = st.drained
		}
		got, v := h.Drained()
		if !slices.Equal(got, want) {
			t.Fatalf("%s: drained %v, want %v", st.name, got, want)
		}
		if changed := st.code == http.StatusOK && st.name != "again: no change"; changed != (v != version) {
			t.Errorf("%s: version %d -> %d", st.name, version, v)
		}
		version = v
	}
	// What the hook accepts, a fabric routes around.
	fab, err := NewFabric(&Scenario{Name: "t", Topology: topo, Interval: DefaultInterval, Duration: DefaultInterval}, x, Epoch)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := h.Drained()
	if err := fab.SetDrained(names); err != nil || !slices.Equal(fab.Drained(), names) {
		t.Errorf("fabric drained %v (%v), want %v", fab.Drained(), err, names)
	}
}
