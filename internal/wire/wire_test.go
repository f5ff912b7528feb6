package wire

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

func validBatch() *Batch {
	return &Batch{
		Agent: "dc1-pod1-rack1-h01", Epoch: 7, Seq: 3, CreatedUnixNano: 1e18, AgentVersion: "v1", PinglistVersion: 2,
		SchedulingLag: &SchedulingLag{P50Ns: 1000, P99Ns: 9000, MaxNs: 20000, Samples: 4},
		Results: []*ProbeResult{
			{Dst: "dc1-pod1-rack1-h02", Protocol: Protocol_PROTOCOL_TCP, Outcome: Outcome_OUTCOME_OK, StartUnixNano: 1e18, RttNs: 45000, SrcAddr: "127.1.0.1", SrcPort: 40000, DstAddr: "127.1.0.2", DstPort: 7100},
			{Dst: "dc1-pod1-rack1-h03", Protocol: Protocol_PROTOCOL_UDP, Outcome: Outcome_OUTCOME_LOST, StartUnixNano: 1e18, Seq: 9, Error: "timeout"},
			{Dst: "web", Protocol: Protocol_PROTOCOL_HTTP, Outcome: Outcome_OUTCOME_BAD_RESPONSE, Http: &HTTPTiming{Status: 503}},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	b := validBatch()
	data, err := Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(b, back) {
		t.Fatalf("round trip changed the batch:\n%v\n%v", b, back)
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(*Batch)
		reason string
	}{
		{"no agent", func(b *Batch) { b.Agent = "" }, "invalid_field"},
		{"seq zero", func(b *Batch) { b.Seq = 0 }, "invalid_field"},
		{"no dst", func(b *Batch) { b.Results[0].Dst = "" }, "invalid_field"},
		{"unknown protocol", func(b *Batch) { b.Results[0].Protocol = 99 }, "invalid_field"},
		{"no outcome", func(b *Batch) { b.Results[0].Outcome = 0 }, "invalid_field"},
		{"negative rtt", func(b *Batch) { b.Results[0].RttNs = -1 }, "invalid_field"},
		{"huge error", func(b *Batch) { b.Results[1].Error = strings.Repeat("x", MaxErrorLen+1) }, "invalid_field"},
		{"too many results", func(b *Batch) {
			for len(b.Results) <= MaxResultsPerBatch {
				b.Results = append(b.Results, b.Results[0])
			}
		}, "too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := validBatch()
			tc.edit(b)
			data, err := proto.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Decode(data)
			if err == nil {
				t.Fatal("accepted")
			}
			if got := Reason(err); got != tc.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.reason)
			}
		})
	}
	if _, err := Decode([]byte{0xff, 0xff, 0xff}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage: %v", err)
	}
	if _, err := Decode(make([]byte, MaxBatchBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
}

func TestCountsAndLost(t *testing.T) {
	for o, want := range map[Outcome][2]bool{ // counts, lost
		Outcome_OUTCOME_OK:             {true, false},
		Outcome_OUTCOME_LOST:           {true, true},
		Outcome_OUTCOME_SYN_RETRANSMIT: {true, true},
		Outcome_OUTCOME_REFUSED:        {false, false},
		Outcome_OUTCOME_ERROR:          {false, false},
		Outcome_OUTCOME_BAD_RESPONSE:   {true, false},
	} {
		r := &ProbeResult{Outcome: o}
		if Counts(r) != want[0] || Lost(r) != want[1] {
			t.Errorf("%v: counts %v lost %v, want %v", o, Counts(r), Lost(r), want)
		}
	}
}

func TestPathReport(t *testing.T) {
	r := &PathReport{Agent: "h1", Probes: []*TracedProbe{{Dst: "h2", Protocol: Protocol_PROTOCOL_TCP, Lost: true, Hops: []string{"h1", "t1", "h2", "t1", "h1"}}}}
	data, _ := proto.Marshal(r)
	back, err := DecodePathReport(data)
	if err != nil || !proto.Equal(r, back) {
		t.Fatalf("round trip: %v %v", err, back)
	}
	r.Probes[0].Hops = r.Probes[0].Hops[:1]
	data, _ = proto.Marshal(r)
	if _, err := DecodePathReport(data); !errors.Is(err, ErrInvalidField) {
		t.Fatalf("one-hop path accepted: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	data, _ := Encode(validBatch())
	f.Add(data)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 'h', '1', 0x18, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Decode(data)
		if err != nil {
			if Reason(err) == "other" {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if Validate(b) != nil {
			t.Fatal("decoded batch does not validate")
		}
		again, err := Encode(b)
		if err != nil {
			t.Fatalf("valid batch does not encode: %v", err)
		}
		if _, err := Decode(again); err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
	})
}

func FuzzDecodePathReport(f *testing.F) {
	data, _ := proto.Marshal(&PathReport{Agent: "h1", Probes: []*TracedProbe{{Dst: "h2", Hops: []string{"h1", "t", "h2"}}}})
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodePathReport(data)
		if err != nil {
			return
		}
		for _, p := range r.Probes {
			if len(p.Hops) < 2 || len(p.Hops) > MaxHops {
				t.Fatalf("accepted %d hops", len(p.Hops))
			}
		}
	})
}
