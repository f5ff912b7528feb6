package pinglist

import (
	"strings"
	"testing"
	"time"
)

func TestBoostRoundTrip(t *testing.T) {
	until := time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)
	b := &Boost{Host: "h1", Version: 3, Until: until, Probes: 2, Peers: []string{"h2", "h3"}, Elements: []string{"leaf1--spine1"}}
	data, err := EncodeBoost(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeBoost(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Host != "h1" || got.Probes != 2 || len(got.Peers) != 2 || !got.Until.Equal(until) {
		t.Errorf("round trip: %+v", got)
	}
	if !got.Active(until.Add(-time.Second)) || got.Active(until) {
		t.Error("active past its end, or not before it")
	}
	var none *Boost
	if none.Active(until) || (&Boost{Host: "h1"}).Active(time.Time{}) {
		t.Error("no boost is active")
	}
}

func TestDecodeBoostRejects(t *testing.T) {
	many := `"` + strings.Repeat(`p","`, MaxBoostPeers) + `p"`
	for _, bad := range []string{
		``,
		`[]`,
		`{"probes":2,"peers":["h2"],"until":"2026-01-01T00:00:00Z"}`,                     // no host
		`{"host":"h1","probes":1,"peers":["h2"],"until":"2026-01-01T00:00:00Z"}`,         // one probe is no boost
		`{"host":"h1","probes":17,"peers":["h2"],"until":"2026-01-01T00:00:00Z"}`,        // over the cap
		`{"host":"h1","probes":2,"peers":["h2"]}`,                                        // no end
		`{"host":"h1","probes":2,"peers":[""],"until":"2026-01-01T00:00:00Z"}`,           // empty peer
		`{"host":"h1","probes":2,"peers":[` + many + `],"until":"2026-01-01T00:00:00Z"}`, // too many peers
		`{"host":"h1","probes":2,"peers":["h2"],"until":"2026-01-01T00:00:00Z","elements":[` + many + `]}`,
	} {
		if b, err := DecodeBoost([]byte(bad)); err == nil {
			t.Errorf("accepted %.80q as %+v", bad, b)
		}
	}
	// A withdrawal: no peers, nothing else needed.
	if _, err := DecodeBoost([]byte(`{"host":"h1"}`)); err != nil {
		t.Errorf("withdrawal refused: %v", err)
	}
}

func FuzzDecodeBoost(f *testing.F) {
	f.Add([]byte(`{"host":"h1","probes":2,"peers":["h2"],"until":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"host":"h1","probes":99,"peers":["h2"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBoost(data)
		if err != nil {
			return
		}
		if b.Host == "" || len(b.Peers) > MaxBoostPeers || (len(b.Peers) > 0 && (b.Probes < 2 || b.Probes > MaxBoostProbes || b.Until.IsZero())) {
			t.Fatalf("accepted invalid boost %+v", b)
		}
	})
}
