package wire

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
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
		{"rtt of 31 years", func(b *Batch) { b.Results[0].RttNs = 1e18 }, "invalid_field"},
		{"rtt just over an hour", func(b *Batch) { b.Results[0].RttNs = MaxRTTNs + 1 }, "invalid_field"},
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
	r := &PathReport{Agent: "h1", Probes: []*TracedProbe{{Dst: "h2", Protocol: Protocol_PROTOCOL_TCP, Lost: true, Hops: []string{"t1", "*", "h2"}, Reached: true}}}
	data, _ := proto.Marshal(r)
	back, err := DecodePathReport(data)
	if err != nil || !proto.Equal(r, back) {
		t.Fatalf("round trip: %v %v", err, back)
	}
	r.Probes[0].Hops = nil
	data, _ = proto.Marshal(r)
	if _, err := DecodePathReport(data); !errors.Is(err, ErrInvalidField) {
		t.Fatalf("path without hops accepted: %v", err)
	}
	// A reverse trace is of a lost probe, and names the prober's port.
	for name, p := range map[string]*TracedProbe{
		"good":     {Dst: "198.18.1.1", Reverse: true, Lost: true, SrcPort: 7777, DstPort: 40000, Hops: []string{"*"}},
		"not lost": {Dst: "198.18.1.1", Reverse: true, SrcPort: 7777, DstPort: 40000, Hops: []string{"*"}},
		"no port":  {Dst: "198.18.1.1", Reverse: true, Lost: true, SrcPort: 7777, Hops: []string{"*"}},
	} {
		data, _ = proto.Marshal(&PathReport{Agent: "h2", Probes: []*TracedProbe{p}})
		if _, err := DecodePathReport(data); (err == nil) != (name == "good") {
			t.Errorf("reverse trace, %s: %v", name, err)
		}
	}
}

// FuzzDecode holds the generated decoder to protobuf-go's. Whatever
// protobuf-go reads as a valid batch, Decode reads the same from its
// canonical encoding; whatever Decode accepts is a well-formed batch that
// protobuf-go encodes and reads back unchanged, and reads the same when it
// accepts the same bytes, unknown fields aside (Decode drops them). On
// bytes no encoder writes they differ a little: Decode truncates a varint
// over 64 bits, checks only the last occurrence of a repeated string field
// for UTF-8 (the one kept), does not check the bytes of unknown fields, and
// refuses a known field in the wrong wire type (protobuf-go keeps it as
// unknown).
func FuzzDecode(f *testing.F) {
	data, _ := Encode(validBatch())
	f.Add(data)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 'h', '1', 0x18, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		var ref Batch
		refOK := proto.Unmarshal(data, &ref) == nil
		if refOK {
			dropUnknown(ref.ProtoReflect()) // Decode drops them too
		}
		if refOK && Validate(&ref) == nil {
			canonical, err := proto.Marshal(&ref)
			if err != nil {
				t.Fatal(err)
			}
			if len(canonical) <= MaxBatchBytes {
				got, err := Decode(canonical)
				if err != nil {
					t.Fatalf("Decode refused the canonical encoding of a valid batch: %v", err)
				}
				if !proto.Equal(got, &ref) {
					t.Fatalf("Decode read %v, protobuf-go %v", got, &ref)
				}
			}
		}
		b, err := Decode(data)
		if err != nil {
			if Reason(err) == "other" {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if hasUnknown(b.ProtoReflect()) {
			t.Fatal("Decode kept unknown fields")
		}
		if refOK && !proto.Equal(b, &ref) {
			t.Fatalf("Decode read %v, protobuf-go %v", b, &ref)
		}
		if Validate(b) != nil {
			t.Fatal("decoded batch does not validate")
		}
		canonical, err := proto.Marshal(b)
		if err != nil {
			t.Fatalf("accepted batch is not well-formed: %v", err)
		}
		var back Batch
		if err := proto.Unmarshal(canonical, &back); err != nil || !proto.Equal(b, &back) {
			t.Fatalf("accepted batch does not survive protobuf-go: %v", err)
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

// FuzzDecodePathReport: as FuzzDecode, for path reports.
func FuzzDecodePathReport(f *testing.F) {
	data, _ := proto.Marshal(&PathReport{Agent: "h1", Probes: []*TracedProbe{{Dst: "h2", Hops: []string{"h1", "t", "h2"}}}})
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		var ref PathReport
		refOK := proto.Unmarshal(data, &ref) == nil
		if refOK {
			dropUnknown(ref.ProtoReflect()) // DecodePathReport drops them too
			if canonical, err := proto.Marshal(&ref); err == nil && len(canonical) <= MaxBatchBytes {
				if got, err := DecodePathReport(canonical); err == nil && !proto.Equal(got, &ref) {
					t.Fatalf("DecodePathReport read %v, protobuf-go %v", got, &ref)
				}
			}
		}
		r, err := DecodePathReport(data)
		if err != nil {
			return
		}
		if hasUnknown(r.ProtoReflect()) {
			t.Fatal("DecodePathReport kept unknown fields")
		}
		if refOK && !proto.Equal(r, &ref) {
			t.Fatalf("DecodePathReport read %v, protobuf-go %v", r, &ref)
		}
		for _, p := range r.Probes {
			if len(p.Hops) < 1 || len(p.Hops) > MaxHops {
				t.Fatalf("accepted %d hops", len(p.Hops))
			}
		}
		canonical, err := proto.Marshal(r)
		if err != nil {
			t.Fatalf("accepted report is not well-formed: %v", err)
		}
		var back PathReport
		if err := proto.Unmarshal(canonical, &back); err != nil || !proto.Equal(r, &back) {
			t.Fatalf("accepted report does not survive protobuf-go: %v", err)
		}
	})
}

// dropUnknown clears the unknown fields of m and every message in it.
func dropUnknown(m protoreflect.Message) {
	m.SetUnknown(nil)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() == protoreflect.MessageKind && fd.IsList():
			for i := range v.List().Len() {
				dropUnknown(v.List().Get(i).Message())
			}
		case fd.Kind() == protoreflect.MessageKind:
			dropUnknown(v.Message())
		}
		return true
	})
}

// hasUnknown reports whether m or a message in it kept unknown fields.
func hasUnknown(m protoreflect.Message) bool {
	found := len(m.GetUnknown()) > 0
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() == protoreflect.MessageKind && fd.IsList():
			for i := range v.List().Len() {
				found = found || hasUnknown(v.List().Get(i).Message())
			}
		case fd.Kind() == protoreflect.MessageKind:
			found = found || hasUnknown(v.Message())
		}
		return !found
	})
	return found
}

// TestDecodeRefusesInvalidUTF8: every string field of every message, set
// to bytes that are not UTF-8, makes the batch or report malformed, as
// protobuf-go's decoder would: a new string field cannot slip past the
// generated decoder's missing check.
func TestDecodeRefusesInvalidUTF8(t *testing.T) {
	const bad = "h\xff1"
	var setString func(m protoreflect.Message, path string, visit func(path string, set func()))
	setString = func(m protoreflect.Message, path string, visit func(string, func())) {
		fields := m.Descriptor().Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			name := path + "." + string(fd.Name())
			switch {
			case fd.Kind() == protoreflect.StringKind && fd.IsList():
				visit(name, func() { m.Mutable(fd).List().Append(protoreflect.ValueOfString(bad)) })
			case fd.Kind() == protoreflect.StringKind:
				visit(name, func() { m.Set(fd, protoreflect.ValueOfString(bad)) })
			case fd.Kind() == protoreflect.MessageKind && fd.IsList():
				l := m.Get(fd).List()
				for j := range l.Len() {
					setString(l.Get(j).Message(), fmt.Sprintf("%s[%d]", name, j), visit)
				}
			case fd.Kind() == protoreflect.MessageKind && m.Has(fd):
				setString(m.Get(fd).Message(), name, visit)
			}
		}
	}
	seen := 0
	base := validBatch()
	setString(base.ProtoReflect(), "Batch", func(path string, _ func()) {
		b := validBatch()
		setString(b.ProtoReflect(), "Batch", func(p string, set func()) {
			if p == path {
				set()
			}
		})
		data, err := b.MarshalVT() // protobuf-go would refuse to encode it
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(data); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s not UTF-8: Decode = %v, want malformed", path, err)
		}
		seen++
	})
	report := func() *PathReport {
		return &PathReport{Agent: "h1", Probes: []*TracedProbe{{Dst: "h2", Hops: []string{"h1", "t", "h2"}}}}
	}
	setString(report().ProtoReflect(), "PathReport", func(path string, _ func()) {
		r := report()
		setString(r.ProtoReflect(), "PathReport", func(p string, set func()) {
			if p == path {
				set()
			}
		})
		data, err := r.MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodePathReport(data); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s not UTF-8: DecodePathReport = %v, want malformed", path, err)
		}
		seen++
	})
	if seen < 10 {
		t.Fatalf("only %d string fields visited", seen)
	}
}

// BenchmarkDecode: one 1,000-result batch, the generated decoder meshlens
// uses beside protobuf-go's, in the same run.
func BenchmarkDecode(b *testing.B) {
	batch := &Batch{Agent: "dc1-pod1-rack1-h01", Epoch: 1, Seq: 1, AgentVersion: "v1", SchedulingLag: &SchedulingLag{P99Ns: 1000}}
	for i := range 1000 {
		batch.Results = append(batch.Results, &ProbeResult{
			Dst: fmt.Sprintf("dc1-pod%d-rack%d-h%02d", i%4+1, i%50+1, i%20+1), Protocol: Protocol_PROTOCOL_TCP + Protocol(i%2),
			Outcome: Outcome_OUTCOME_OK, StartUnixNano: 1.8e18 + int64(i)*1e7, RttNs: 40000 + int64(i),
			SrcAddr: "10.1.0.1", SrcPort: uint32(30000 + i), DstAddr: "10.2.3.4", DstPort: 7100, Seq: uint64(i),
		})
	}
	data, err := Encode(batch)
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, decode func([]byte) error) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := decode(data); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(batch.Results))/b.Elapsed().Seconds(), "results/s")
	}
	b.Run("protobuf-go", func(b *testing.B) {
		run(b, func(d []byte) error { return proto.Unmarshal(d, new(Batch)) })
	})
	b.Run("meshlens", func(b *testing.B) {
		run(b, func(d []byte) error { _, err := Decode(d); return err })
	})
}
