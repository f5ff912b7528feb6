// Package bustest starts meshlens's embedded NATS server for tests, the
// one way tests get a NATS server. Only tests import it. bus's own tests
// cannot (it imports bus): they call StartEmbedded the same way.
package bustest

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshlens/meshlens/internal/bus"
)

// StartNATS runs meshlens's embedded NATS server (JetStream on, the
// production options of bus.StartEmbedded) until the test ends. An empty
// cfg.Addr is 127.0.0.1:-1: the kernel picks the port, read back with
// ClientURL, so no other process can take it between choosing and binding.
// An empty StoreDir is a fresh temporary directory. To restart a server
// where clients expect it, pass the first one's address and store: the
// port was bound until Shutdown, and if something else took it meanwhile
// StartNATS fails the test instead of connecting clients elsewhere.
func StartNATS(t testing.TB, cfg bus.EmbeddedConfig) *bus.Embedded {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:-1"
	}
	if cfg.StoreDir == "" {
		cfg.StoreDir = t.TempDir()
	}
	e, err := bus.StartEmbedded(cfg)
	if err != nil {
		t.Fatalf("bustest: %v", err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// JetStream is a JetStream client of a fresh embedded server (StartNATS),
// closed when the test ends.
func JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := bus.Connect(StartNATS(t, bus.EmbeddedConfig{}).ClientURL(), "test")
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
