package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshlens/meshlens/internal/bus"
)

// Field status: what an operator needs to hear from an agent in its first
// seconds (the bus cannot be reached, the host is not in the topology),
// said at INFO and above, and the same facts as metrics and /readyz.

const (
	// busRetryLogEvery spaces the repeats of "cannot reach the bus"
	// while the bus stays away (the first failure is said at once).
	busRetryLogEvery = 30 * time.Second
	// helloTimeout bounds one hello; helloRetry is how often an agent
	// with no answer, or an unknown host, asks again.
	helloTimeout = 5 * time.Second
	helloRetry   = 30 * time.Second
	// stallAfter: a probe loop quiet this long is stuck (it wakes every
	// reconcileEvery at least), and /healthz says so.
	reconcileEvery = 10 * time.Second
	stallAfter     = 6 * reconcileEvery
)

// fieldStatus is shared by the NATS callbacks, the hello loop, the probe
// loop and the HTTP handlers: safe for concurrent use.
type fieldStatus struct {
	heartbeat atomic.Int64 // Unix ns of the probe loop's last turn
	// connected wakes the hello loop on every (re)connection.
	connected chan struct{}

	mu          sync.Mutex
	busUp       bool
	busErr      error
	busErrSaid  time.Time // when "cannot reach the bus" was last logged
	hostUnknown bool
	closest     []string
}

func newFieldStatus() *fieldStatus {
	s := &fieldStatus{connected: make(chan struct{}, 1)}
	s.heartbeat.Store(time.Now().UnixNano())
	return s
}

// busOptions are the nats.go callbacks that report the connection's
// state: at once on the first failure, then every busRetryLogEvery.
// reconnected is told of every connection, the first included: the KV
// watches start over at once instead of after their backoff.
func (a *Agent) busOptions(reconnected chan<- struct{}) []nats.Option {
	s := a.status
	up := func(nc *nats.Conn, how string) {
		s.mu.Lock()
		s.busUp, s.busErr, s.busErrSaid = true, nil, time.Time{}
		s.mu.Unlock()
		a.m.busConnected.Set(1)
		a.log.Info("bus "+how, "url", nc.ConnectedUrlRedacted())
		for _, c := range []chan<- struct{}{s.connected, reconnected} {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
	return []nats.Option{
		nats.ConnectHandler(func(nc *nats.Conn) { up(nc, "connected") }),
		nats.ReconnectHandler(func(nc *nats.Conn) { up(nc, "reconnected") }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			s.mu.Lock()
			wasUp := s.busUp
			s.busUp = false
			s.mu.Unlock()
			a.m.busConnected.Set(0)
			if wasUp {
				a.log.Warn("bus lost: probing goes on, results wait in the spool", "err", err)
			}
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			now := time.Now()
			s.mu.Lock()
			s.busErr = err
			say := now.Sub(s.busErrSaid) >= busRetryLogEvery
			if say {
				s.busErrSaid = now
			}
			s.mu.Unlock()
			if say {
				a.log.Warn("cannot reach the bus: probing goes on from the cached pinglist, results wait in the spool; retrying every second",
					"url", a.cfg.NATSURL, "err", err)
			}
		}),
		// Asynchronous errors: a permissions violation means credentials
		// that do not match --host.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			a.log.Warn("bus error", "err", err)
		}),
	}
}

// helloLoop asks a server, after every (re)connection and every
// helloRetry until it answers that the host is known, whether this host
// is in the topology: an agent with a mistyped --host says so within
// seconds instead of waiting silently for a pinglist.
func (a *Agent) helloLoop(ctx context.Context, nc *nats.Conn) {
	retry := time.NewTicker(helloRetry)
	defer retry.Stop()
	answered := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.status.connected:
		case <-retry.C:
			if answered && !a.status.unknown() {
				continue
			}
		}
		if !nc.IsConnected() {
			continue
		}
		h, err := a.hello(ctx, nc)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, nats.ErrNoResponders):
			a.log.Debug("no server answers hellos (a server older than the agent?)")
			continue
		case err != nil:
			a.log.Debug("hello", "err", err)
			continue
		}
		answered = true
		a.setKnown(h)
	}
}

func (a *Agent) hello(ctx context.Context, nc *nats.Conn) (bus.Hello, error) {
	rctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	m, err := nc.RequestWithContext(rctx, bus.HelloSubject(a.cfg.Host), nil)
	if err != nil {
		return bus.Hello{}, fmt.Errorf("agent %s: hello: %w", a.cfg.Host, err)
	}
	var h bus.Hello
	if err := json.Unmarshal(m.Data, &h); err != nil {
		return bus.Hello{}, fmt.Errorf("agent %s: hello answer %q: %w", a.cfg.Host, m.Data, err)
	}
	return h, nil
}

// setKnown records a server's answer, logging it when it changes.
func (a *Agent) setKnown(h bus.Hello) {
	s := a.status
	s.mu.Lock()
	was := s.hostUnknown
	s.hostUnknown, s.closest = !h.Known, h.Closest
	s.mu.Unlock()
	if h.Known {
		a.m.hostKnown.WithLabelValues().Set(1)
		if was {
			a.log.Info("host is now in the topology")
		}
		return
	}
	a.m.hostKnown.WithLabelValues().Set(0)
	if !was {
		a.log.Error(unknownHost(a.cfg.Host, h.Closest).Error())
	}
}

func (s *fieldStatus) unknown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hostUnknown
}

func unknownHost(host string, closest []string) error {
	msg := fmt.Sprintf("host %q is not in the server's topology: no pinglist will come; start the agent with --host set to this host's name in the topology", host)
	if len(closest) > 0 {
		msg += " (closest names: " + strings.Join(closest, ", ") + ")"
	}
	return errors.New(msg)
}

// Live says whether the agent's probe loop is turning; an error means it
// is stuck and the process should be restarted.
func (a *Agent) Live() error {
	last := time.Unix(0, a.status.heartbeat.Load())
	if d := time.Since(last); d > stallAfter {
		return fmt.Errorf("agent %s: probe loop stuck for %v", a.cfg.Host, d.Round(time.Second))
	}
	return nil
}

// Ready says whether the agent is probing: it has a pinglist and no
// server said its host is unknown. The error says why not.
func (a *Agent) Ready() error {
	s := a.status
	s.mu.Lock()
	unknown, closest, busUp, busErr := s.hostUnknown, s.closest, s.busUp, s.busErr
	s.mu.Unlock()
	if unknown {
		return unknownHost(a.cfg.Host, closest)
	}
	a.mu.Lock()
	pl := a.pl
	a.mu.Unlock()
	if pl != nil {
		return nil
	}
	switch {
	case busUp:
		return fmt.Errorf("agent %s: no pinglist yet: waiting for the server to publish this host's", a.cfg.Host)
	case busErr != nil:
		return fmt.Errorf("agent %s: no pinglist yet and the bus is unreachable: %w", a.cfg.Host, busErr)
	default:
		return fmt.Errorf("agent %s: no pinglist yet and not connected to the bus", a.cfg.Host)
	}
}
