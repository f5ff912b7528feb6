package sim

import (
	"slices"
	"testing"
)

// drainSrc: a leaf-spine link losing half its packets, and nothing else
// losing any.
const drainSrc = "name: drain\nseed: 11\n" + fabric16 + "background: {loss: 0}\nfaults:\n  - {kind: link_loss, link: \"dc1-pod1-leaf1--dc1-spine1\", rate: 0.5}\n"

func totalLost(st roundStats) int {
	n := 0
	for _, v := range st.lost {
		n += v
	}
	return n
}

// crossing reports whether any route of f uses a direction of link.
func crossing(t *testing.T, f *Fabric, link string) bool {
	t.Helper()
	a, _ := f.x.Node("dc1-pod1-leaf1")
	b, _ := f.x.Node("dc1-spine1")
	l, ok := f.x.Link(a, b)
	if !ok || link != "dc1-pod1-leaf1--dc1-spine1" {
		t.Fatalf("crossing: unexpected link %s", link)
	}
	for n := int32(f.x.NumHosts); n < int32(f.x.NumNodes()); n++ {
		for slot := range f.x.ToRs {
			for _, h := range f.routes.Next(n, int32(slot)) {
				if h.Link == l || h.Link == f.x.Reverse[l] {
					return true
				}
			}
		}
	}
	return false
}

// TestDrainAvoidsElement: draining the lossy link (or its leaf, or one of
// its directions) ends the losses at once while every pair keeps probing
// successfully; undraining restores the ECMP spread exactly as if it had
// never been drained.
func TestDrainAvoidsElement(t *testing.T) {
	const link = "dc1-pod1-leaf1--dc1-spine1"
	for _, tc := range []struct {
		name  string
		drain []string
		want  []string
	}{
		{"link", []string{link}, []string{link}},
		{"direction", []string{"dc1-spine1->dc1-pod1-leaf1"}, []string{link}},
		{"leaf", []string{"dc1-pod1-leaf1"}, []string{"dc1-pod1-leaf1"}},
		{"spine and link", []string{"dc1-spine1", link, link}, []string{link, "dc1-spine1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newTestFabric(t, mustParse(t, drainSrc))
			ref := newTestFabric(t, mustParse(t, drainSrc)) // never drained
			st := step(t, f, 0)
			step(t, ref, 0)
			if totalLost(st) == 0 || !crossing(t, f, link) {
				t.Fatalf("undrained: %d lost, crossing %v; want losses through %s", totalLost(st), crossing(t, f, link), link)
			}
			if err := f.SetDrained(tc.drain); err != nil {
				t.Fatal(err)
			}
			if got := f.Drained(); !slices.Equal(got, tc.want) {
				t.Errorf("Drained() = %v, want %v", got, tc.want)
			}
			for r := 1; r <= 3; r++ {
				st := step(t, f, r)
				step(t, ref, r)
				if crossing(t, f, link) {
					t.Errorf("round %d: a route still crosses the drained %s", r, link)
				}
				if n := totalLost(st); n != 0 {
					t.Errorf("round %d: %d probes lost with %v drained", r, n, tc.drain)
				}
				// Every pair still reaches its peer: an alternative path exists.
				if len(st.sent) == 0 {
					t.Fatalf("round %d: no probes", r)
				}
				for k, n := range st.sent {
					if n == 0 || st.lost[k] != 0 {
						t.Errorf("round %d: pair %v sent %d, lost %d", r, k, n, st.lost[k])
					}
				}
			}
			if err := f.SetDrained(nil); err != nil {
				t.Fatal(err)
			}
			if got := f.Drained(); len(got) != 0 {
				t.Errorf("Drained() after undrain = %v", got)
			}
			st, want := step(t, f, 4), step(t, ref, 4)
			if totalLost(st) == 0 || !crossing(t, f, link) {
				t.Errorf("after undrain: %d lost, crossing %v; want the link back in use", totalLost(st), crossing(t, f, link))
			}
			if st.digest != want.digest {
				t.Error("after undrain, the round differs from a never-drained fabric's")
			}
		})
	}
}

func TestSetDrainedRejects(t *testing.T) {
	for _, tc := range []struct{ name, element string }{
		{"host", "dc1-pod1-rack1-h01"},
		{"host link", "dc1-pod1-rack1-h01--dc1-pod1-rack1-tor"},
		{"unknown switch", "dc1-spine9"},
		{"unknown link end", "dc1-spine1--dc1-spine9"},
		{"not a link", "dc1-spine1--dc1-spine2"},
		{"garbage", "not an element"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newTestFabric(t, mustParse(t, drainSrc))
			if err := f.SetDrained([]string{"dc1-spine2"}); err != nil {
				t.Fatal(err)
			}
			if err := f.SetDrained([]string{"dc1-spine1", tc.element}); err == nil {
				t.Fatalf("SetDrained(%q) succeeded", tc.element)
			}
			// Nothing changed on the error.
			if got := f.Drained(); !slices.Equal(got, []string{"dc1-spine2"}) {
				t.Errorf("Drained() = %v after a rejected call, want [dc1-spine2]", got)
			}
		})
	}
}

// FuzzSetDrained: any element name is either drained or rejected with the
// drained set left as it was; what was drained can be drained again.
func FuzzSetDrained(f *testing.F) {
	for _, s := range []string{"dc1-spine1", "dc1-pod1-leaf1--dc1-spine1", "dc1-spine1->dc1-pod1-leaf1", "dc1-pod1-rack1-h01", "--", "->", "a->", ""} {
		f.Add(s)
	}
	fab := newTestFabric(f, mustParse(f, drainSrc))
	f.Fuzz(func(t *testing.T, name string) {
		if err := fab.SetDrained(nil); err != nil {
			t.Fatal(err)
		}
		if err := fab.SetDrained([]string{name}); err != nil {
			if got := fab.Drained(); len(got) != 0 {
				t.Fatalf("rejected %q but drained %v", name, got)
			}
			return
		}
		got := fab.Drained()
		if len(got) != 1 {
			t.Fatalf("drained %q: Drained() = %v", name, got)
		}
		if err := fab.SetDrained(got); err != nil || !slices.Equal(fab.Drained(), got) {
			t.Fatalf("re-draining %v: %v, now %v", got, err, fab.Drained())
		}
	})
}
