package sim

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/bus/bustest"
	"github.com/meshlens/meshlens/internal/clock"
)

// TestWatchBoostsWaitsForTheBucket: sim live waits for the evidence
// bucket as an agent waits for its pinglist (a server not up yet, a
// cluster slow to answer) instead of ending the run; it gives up only
// when its context ends.
func TestWatchBoostsWaitsForTheBucket(t *testing.T) {
	js := bustest.JetStream(t)
	log := slog.New(slog.DiscardHandler)
	done := make(chan error, 1)
	go func() {
		_, err := watchBoosts(t.Context(), js, clock.Real{}, log)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("returned before the bucket existed: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: bus.EvidenceBucket}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after the bucket appeared: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still waiting 30 s after the bucket appeared")
	}

	other := bustest.JetStream(t) // a bus without the bucket
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	if _, err := watchBoosts(ctx, other, clock.Real{}, log); err == nil {
		t.Error("no error when the context ended without a bucket")
	}
}
