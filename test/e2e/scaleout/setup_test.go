package scaleout

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/test/e2e/e2eutil"
)

// TestConcurrentStreamSetup: processes of a deployment start at the same
// instant and set up the streams and buckets together, on a fresh cluster
// and on one that has them. A create or update that races another one's
// once went unanswered for good (two aggregators both waited a minute and
// exited, three times in three); each must now finish.
func TestConcurrentStreamSetup(t *testing.T) {
	nodes := e2eutil.StartNATSCluster(t, filepath.Join(t.TempDir(), "cluster"), "meshlens-setup", nil)
	urls := e2eutil.ClusterURLs(nodes)
	setup := func() error {
		nc, err := bus.Connect(urls, "setup-test")
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		defer cancel()
		if err := bus.EnsureRollupStream(ctx, js, bus.RollupStreamSettings{Partitions: 2, Replicas: 3}); err != nil {
			return err
		}
		return bus.EnsureStreams(ctx, js, bus.StreamSettings{Partitions: 2, Replicas: 3})
	}
	for round := range 4 {
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = setup()
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d, process %d: %v", round, i, err)
			}
		}
		if round%2 == 1 {
			continue // the next round finds the streams
		}
		nc, err := bus.Connect(urls, "setup-test")
		if err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		for _, s := range []string{bus.RollupsStream, bus.ResultsStream} {
			if err := js.DeleteStream(ctx, s); err != nil {
				t.Fatalf("delete %s: %v", s, err)
			}
		}
		cancel()
		nc.Close()
	}
}
