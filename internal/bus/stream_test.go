package bus

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestResultsStreamBounds: the results stream stores the configured
// partitions only, refuses batches over its message size, and when full
// refuses new batches rather than discard unread ones.
func TestResultsStreamBounds(t *testing.T) {
	js := testJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const maxBytes = 64 << 10
	if err := EnsureStreams(ctx, js, StreamSettings{Partitions: 2, MaxMsgSize: 4 << 10, MaxBytes: maxBytes}); err != nil {
		t.Fatal(err)
	}
	pub := func(subject string, size int) error {
		_, err := js.Publish(ctx, subject, bytes.Repeat([]byte{'x'}, size))
		return err
	}
	if err := pub(ResultsSubject(1, "h1"), 100); err != nil {
		t.Fatalf("partition 1: %v", err)
	}
	// Nobody aggregates partition 7: not stored for a day, refused now.
	if err := pub(ResultsSubject(7, "h1"), 100); err == nil {
		t.Error("a batch for an unconfigured partition was stored")
	}
	if err := pub(ResultsSubject(0, "h1"), 5<<10); err == nil {
		t.Error("a batch over the message size was stored")
	}
	// Fill the stream: the first batches stay, the flood is refused.
	first := 0
	var refused error
	for i := 0; i < 100 && refused == nil; i++ {
		if refused = pub(ResultsSubject(0, "flooder"), 3<<10); refused == nil {
			first++
		}
	}
	if refused == nil {
		t.Fatal("a full stream took more")
	}
	st, err := js.Stream(ctx, ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Bytes > maxBytes || info.State.FirstSeq != 1 {
		t.Errorf("stream holds %d bytes from seq %d: over the cap, or unread batches discarded", info.State.Bytes, info.State.FirstSeq)
	}
	t.Logf("%d batches of 3 KiB stored before the cap refused: %v", first, refused)
	// Updating an existing stream to the bounds works (a running fleet).
	if err := EnsureStreams(ctx, js, StreamSettings{Partitions: 3, MaxMsgSize: 4 << 10, MaxBytes: 2 * maxBytes}); err != nil {
		t.Fatal(err)
	}
	if err := pub(ResultsSubject(2, "h1"), 100); err != nil {
		t.Errorf("partition 2 after the update: %v", err)
	}
}

// TestPartitionsMustAgree: a process configured with another partition
// count than the streams were made with is refused at start, for the
// rollups stream and the results stream alike; the same count is fine.
func TestPartitionsMustAgree(t *testing.T) {
	js := testJetStream(t)
	ctx := t.Context()
	if err := EnsureRollupStream(ctx, js, RollupStreamSettings{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	if err := EnsureStreams(ctx, js, StreamSettings{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	if err := EnsureRollupStream(ctx, js, RollupStreamSettings{Partitions: 2}); err != nil {
		t.Errorf("the same partitions again: %v", err)
	}
	if err := CheckResultPartitions(ctx, js, 2); err != nil {
		t.Errorf("the same partitions: %v", err)
	}
	if err := EnsureRollupStream(ctx, js, RollupStreamSettings{Partitions: 3}); !errors.Is(err, ErrPartitionsDisagree) {
		t.Errorf("3 partitions on a stream of 2: %v", err)
	}
	if err := CheckResultPartitions(ctx, js, 1); !errors.Is(err, ErrPartitionsDisagree) {
		t.Errorf("1 partition on a results stream of 2: %v", err)
	}
	st, err := js.Stream(ctx, RollupsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(st.CachedInfo().Config.Subjects); n != 2 {
		t.Errorf("the refused process changed the stream: %d subjects", n)
	}
}

// testJetStream is a JetStream client of a fresh embedded server (bus's
// own tests cannot import bustest, which imports bus).
func testJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	emb, err := StartEmbedded(EmbeddedConfig{Addr: "127.0.0.1:-1", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	nc, err := Connect(emb.ClientURL(), "stream-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
