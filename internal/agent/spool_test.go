package agent

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func testSpool(t *testing.T, dir string, maxBytes int64) *spool {
	t.Helper()
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := openSpool(dir, maxBytes, m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// payload is a fake encoded batch of n bytes naming its seq.
func payload(n int) func(epoch, seq uint64) ([]byte, error) {
	return func(epoch, seq uint64) ([]byte, error) {
		b := []byte(fmt.Sprintf("%d/%d;", epoch, seq))
		return append(b, bytes.Repeat([]byte{'x'}, n-len(b))...), nil
	}
}

func sealN(t *testing.T, s *spool, n, size int) {
	t.Helper()
	for range n {
		if _, err := s.seal(payload(size)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSpoolSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	s := testSpool(t, dir, 1<<20)
	sealN(t, s, 3, 100)
	seq, data, ok := s.oldest()
	if !ok || seq != 1 || !bytes.HasPrefix(data, []byte(fmt.Sprintf("%d/1;", s.epoch))) {
		t.Fatalf("oldest %d %q %v", seq, data[:10], ok)
	}
	s.remove(1) // acknowledged
	// A write cut short by the crash leaves a tmp file behind.
	if err := os.WriteFile(filepath.Join(dir, batchesDir, "00000000000000000004.batch.tmp"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}

	// "Crash": no close; a new process opens the same directory.
	s2 := testSpool(t, dir, 1<<20)
	if s2.epoch != s.epoch || s2.lastSeq != 3 || s2.pending() != 2 || testutil.ToFloat64(s2.m.spoolBytes) != 200 {
		t.Fatalf("reopened: epoch %d (was %d), last seq %d, %d pending, %v bytes", s2.epoch, s.epoch, s2.lastSeq, s2.pending(), testutil.ToFloat64(s2.m.spoolBytes))
	}
	if _, err := os.Stat(filepath.Join(dir, batchesDir, "00000000000000000004.batch.tmp")); !os.IsNotExist(err) {
		t.Errorf("tmp file left: %v", err)
	}
	if seq, _ := s2.seal(payload(100)); seq != 4 {
		t.Errorf("next seq %d, want 4", seq)
	}
	for want := uint64(2); want <= 4; want++ {
		seq, _, ok := s2.oldest()
		if !ok || seq != want {
			t.Fatalf("oldest %d, want %d", seq, want)
		}
		s2.remove(seq)
	}
	if s2.pending() != 0 || testutil.ToFloat64(s2.m.spoolBytes) != 0 {
		t.Errorf("%d pending, %v bytes", s2.pending(), testutil.ToFloat64(s2.m.spoolBytes))
	}
	// Seq survives an empty spool too.
	if s3 := testSpool(t, dir, 1<<20); s3.lastSeq != 4 {
		t.Errorf("last seq %d after all acknowledged, want 4", s3.lastSeq)
	}
}

func TestSpoolDropsOldestOverLimit(t *testing.T) {
	s := testSpool(t, t.TempDir(), 250)
	sealN(t, s, 5, 100)
	if got := testutil.ToFloat64(s.m.spoolDropped); got != 3 {
		t.Errorf("dropped %v, want 3", got)
	}
	if seq, _, _ := s.oldest(); seq != 4 || s.pending() != 2 {
		t.Errorf("oldest %d of %d, want 4 of 2", seq, s.pending())
	}
	files, _ := os.ReadDir(filepath.Join(s.dir, batchesDir))
	if len(files) != 2 {
		t.Errorf("%d files on disk", len(files))
	}
}

func TestSpoolDiskRefuses(t *testing.T) {
	s := testSpool(t, t.TempDir(), 1<<20)
	// The batches directory becomes a file: every batch write fails, as
	// on a full disk.
	bd := filepath.Join(s.dir, batchesDir)
	if err := os.RemoveAll(bd); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bd, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sealN(t, s, 2, 100)
	if got := testutil.ToFloat64(s.m.spoolErrors); got != 2 {
		t.Errorf("spool errors %v, want 2", got)
	}
	// The batches wait in memory and are still published in order.
	for want := uint64(1); want <= 2; want++ {
		seq, data, ok := s.oldest()
		if !ok || seq != want || len(data) != 100 {
			t.Fatalf("oldest %d (%d bytes), want %d", seq, len(data), want)
		}
		s.remove(seq)
	}
}

func TestSpoolSkipsUnreadableBatch(t *testing.T) {
	s := testSpool(t, t.TempDir(), 1<<20)
	sealN(t, s, 2, 100)
	if err := os.Remove(s.batchPath(1)); err != nil {
		t.Fatal(err)
	}
	if seq, _, ok := s.oldest(); !ok || seq != 2 {
		t.Fatalf("oldest %d, want 2", seq)
	}
	if got := testutil.ToFloat64(s.m.spoolErrors); got != 1 {
		t.Errorf("spool errors %v", got)
	}
}

func TestParseState(t *testing.T) {
	tests := []struct {
		in   string
		ok   bool
		want spoolState
	}{
		{`{"epoch":7,"seq":3}`, true, spoolState{7, 3}},
		{`{"epoch":7}`, true, spoolState{7, 0}},
		{`{"seq":3}`, false, spoolState{}},
		{`{`, false, spoolState{}},
		{``, false, spoolState{}},
	}
	for _, tc := range tests {
		st, err := parseState([]byte(tc.in))
		if (err == nil) != tc.ok || (tc.ok && st != tc.want) {
			t.Errorf("parseState(%q) = %v, %v", tc.in, st, err)
		}
	}
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"epoch":7,"seq":3}`))
	f.Add([]byte(`{"epoch":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseState(b)
		if err == nil && st.Epoch == 0 {
			t.Fatalf("accepted a state without epoch: %q", b)
		}
	})
}
