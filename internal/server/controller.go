package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/bus"
	"github.com/meshlens/meshlens/internal/pinglist"
	"github.com/meshlens/meshlens/internal/topology"
)

// Controller turns the topology into pinglists and publishes them to the
// pinglist KV bucket, where each agent watches its own key. The version
// goes up only when some host's list really changes, so a server restart
// does not make ten thousand agents reload for nothing.
type Controller struct {
	settings pinglist.Settings
	logger   *slog.Logger
	now      func() time.Time

	mu      sync.RWMutex
	lists   map[string]*pinglist.Pinglist
	version uint64

	published prometheus.Counter
	versionG  prometheus.Gauge
}

// controllerState is what the controller remembers across restarts.
type controllerState struct {
	Version uint64 `json:"version"`
	Digest  string `json:"digest"`
}

const controllerStateKey = "controller.pinglists"

func NewController(settings pinglist.Settings, reg prometheus.Registerer, logger *slog.Logger) *Controller {
	c := &Controller{
		settings: settings,
		logger:   logger,
		now:      time.Now,
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_controller_pinglists_published_total",
			Help: "Pinglists written to the KV bucket.",
		}),
		versionG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_controller_pinglist_version",
			Help: "Version of the fleet's current pinglists.",
		}),
	}
	if reg != nil {
		reg.MustRegister(c.published, c.versionG)
	}
	return c
}

// Pinglist returns the current list of one host.
func (c *Controller) Pinglist(host string) (*pinglist.Pinglist, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.lists[host]
	return p, ok
}

// Version is the current fleet pinglist version.
func (c *Controller) Version() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.version
}

// Apply computes the pinglists of topo and publishes every one of them,
// then deletes the keys of hosts no longer in the topology.
func (c *Controller) Apply(ctx context.Context, js jetstream.JetStream, topo *topology.Topology) error {
	lists, err := pinglist.Generate(topo, c.settings, 0, time.Time{}, bus.AgentPartition)
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	digest, err := digestOf(lists)
	if err != nil {
		return err
	}
	state, err := js.KeyValue(ctx, bus.StateBucket)
	if err != nil {
		return fmt.Errorf("controller: state bucket: %w", err)
	}
	var prev controllerState
	if e, err := state.Get(ctx, controllerStateKey); err == nil {
		if err := json.Unmarshal(e.Value(), &prev); err != nil {
			return fmt.Errorf("controller: state %q: %w", controllerStateKey, err)
		}
	} else if !bus.IsNotFound(err) {
		return fmt.Errorf("controller: read state: %w", err)
	}
	version := prev.Version
	if prev.Digest != digest {
		version++
	}
	now := c.now().UTC()
	for _, l := range lists {
		l.Version = version
		l.Generated = now
	}

	kv, err := js.KeyValue(ctx, bus.PinglistBucket)
	if err != nil {
		return fmt.Errorf("controller: pinglist bucket: %w", err)
	}
	hosts := make([]string, 0, len(lists))
	for h := range lists {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		// An unchanged version that is already stored is left alone, so a
		// restart does not wake every agent's watcher.
		if version == prev.Version {
			if e, err := kv.Get(ctx, h); err == nil {
				if old, err := pinglist.Decode(e.Value()); err == nil && old.Version == version {
					continue
				}
			}
		}
		data, err := pinglist.Encode(lists[h])
		if err != nil {
			return fmt.Errorf("controller: encode pinglist of %s: %w", h, err)
		}
		if _, err := kv.Put(ctx, h, data); err != nil {
			return fmt.Errorf("controller: publish pinglist of %s: %w", h, err)
		}
		c.published.Inc()
	}
	if err := deleteStale(ctx, kv, lists); err != nil {
		return err
	}
	data, _ := json.Marshal(controllerState{Version: version, Digest: digest})
	if _, err := state.Put(ctx, controllerStateKey, data); err != nil {
		return fmt.Errorf("controller: save state: %w", err)
	}
	c.mu.Lock()
	c.lists, c.version = lists, version
	c.mu.Unlock()
	c.versionG.Set(float64(version))
	if version != prev.Version {
		c.logger.Info("pinglists published", "version", version, "hosts", len(lists))
	}
	return nil
}

func deleteStale(ctx context.Context, kv jetstream.KeyValue, lists map[string]*pinglist.Pinglist) error {
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("controller: list pinglist keys: %w", err)
	}
	var stale []string
	for k := range keys.Keys() {
		if _, ok := lists[k]; !ok {
			stale = append(stale, k)
		}
	}
	for _, k := range stale {
		if err := kv.Delete(ctx, k); err != nil {
			return fmt.Errorf("controller: delete pinglist of removed host %s: %w", k, err)
		}
	}
	return nil
}

// digestOf hashes the lists' content, without version and time stamps.
func digestOf(lists map[string]*pinglist.Pinglist) (string, error) {
	hosts := make([]string, 0, len(lists))
	for h := range lists {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	sum := sha256.New()
	for _, h := range hosts {
		data, err := json.Marshal(lists[h])
		if err != nil {
			return "", fmt.Errorf("controller: digest %s: %w", h, err)
		}
		sum.Write(data)
	}
	return hex.EncodeToString(sum.Sum(nil)), nil
}

// EnsureFleetKey makes sure the fleet's UDP probe HMAC key exists, creating
// a random one on first start. The key never leaves the bus: agents read it
// with credentials limited to that one key.
func EnsureFleetKey(ctx context.Context, js jetstream.JetStream) error {
	kv, err := js.KeyValue(ctx, bus.FleetBucket)
	if err != nil {
		return fmt.Errorf("controller: fleet bucket: %w", err)
	}
	if e, err := kv.Get(ctx, bus.ResponderKeyKey); err == nil && len(e.Value()) >= 32 {
		return nil
	} else if err != nil && !bus.IsNotFound(err) {
		return fmt.Errorf("controller: read fleet key: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("controller: fleet key: %w", err)
	}
	if _, err := kv.Create(ctx, bus.ResponderKeyKey, key); err != nil {
		// Another server won the race: its key stands.
		if e, gerr := kv.Get(ctx, bus.ResponderKeyKey); gerr == nil && !bytes.Equal(e.Value(), key) {
			return nil
		}
		return fmt.Errorf("controller: create fleet key: %w", err)
	}
	return nil
}
