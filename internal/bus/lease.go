package bus

// A leader lease in a JetStream KV bucket: one analyzer among several
// servers, handed over when the leader dies.
//
// The lease is a key whose value names its holder. The holder renews it
// every TTL/4 with a compare-and-set on the revision it last wrote. A
// contender takes it over only after seeing the same revision for a whole
// TTL on its own monotonic clock, then with a compare-and-set on that
// revision: no wall clocks are compared across machines, so clock skew
// between servers cannot create two leaders. The holder stops calling
// itself leader TTL/2 after its last successful renewal, well before any
// contender may take over (monotonic clocks run at the same rate), so two
// leaders never overlap. A holder that stops cleanly deletes the key and
// the other side takes over at once.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LeaseConfig configures a Lease.
type LeaseConfig struct {
	// KV is the bucket holding the lease (bus.StateBucket).
	KV jetstream.KeyValue
	// Key names the lease, e.g. "lease.analyzer".
	Key string
	// Holder identifies this process (host name + pid is enough).
	Holder string
	// TTL: a dead leader is replaced after at most TTL plus one poll
	// (TTL/4). Default 10s, so a handover takes well under 15s.
	TTL time.Duration
	// OnChange is called, from Run's goroutine, when this process gains
	// (true) or loses (false) the lease. Optional.
	OnChange func(leader bool)
	// May, when set, says whether this process may take the lease now.
	// While it says no, the lease is watched all the same, so that a
	// holder silent for a TTL is taken over as soon as it says yes.
	May    func() bool
	Logger *slog.Logger
}

// Lease is one process's side of a leader lease. Leader is safe for
// concurrent use; Run is called once.
type Lease struct {
	cfg LeaseConfig

	mu          sync.Mutex
	leaderUntil time.Time // monotonic; zero when not leader
	// term is the revision at which this process last won the lease: it
	// grows with every change of holder, so it orders the holders'
	// writes (a fencing token).
	term uint64
}

type leaseValue struct {
	Holder string `json:"holder"`
	// Renewed makes every renewal a new value (and revision) even when
	// the holder stays the same; informational only.
	Renewed time.Time `json:"renewed"`
}

// NewLease checks cfg and returns a Lease not yet campaigning.
func NewLease(cfg LeaseConfig) (*Lease, error) {
	switch {
	case cfg.KV == nil:
		return nil, errors.New("bus: lease: no KV bucket")
	case cfg.Key == "":
		return nil, errors.New("bus: lease: no key")
	case cfg.Holder == "":
		return nil, fmt.Errorf("bus: lease %s: no holder name", cfg.Key)
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Lease{cfg: cfg}, nil
}

// Leader reports whether this process holds the lease now.
func (l *Lease) Leader() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.leaderUntil.IsZero() && time.Now().Before(l.leaderUntil)
}

// Term is the lease revision at which this process last won the lease
// (0 before it ever did), and whether it holds the lease now.
func (l *Lease) Term() (term uint64, leader bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.term, !l.leaderUntil.IsZero() && time.Now().Before(l.leaderUntil)
}

// Holder is this process's name in the lease.
func (l *Lease) Holder() string { return l.cfg.Holder }

// Run campaigns for the lease and holds it until ctx ends; then it
// releases the lease if held. It returns nil when ctx ends; bus errors are
// retried, never returned, since the bus may come back.
func (l *Lease) Run(ctx context.Context) error {
	poll := l.cfg.TTL / 4
	t := time.NewTicker(poll)
	defer t.Stop()
	var (
		myRev     uint64    // revision of my last write, when leader
		seenRev   uint64    // last revision seen held by another
		seenSince time.Time // when seenRev was first seen
		wasLeader bool
		lastRenew time.Time
	)
	setLeader := func(until time.Time) {
		l.mu.Lock()
		l.leaderUntil = until
		l.mu.Unlock()
		now := !until.IsZero()
		if now != wasLeader {
			wasLeader = now
			l.cfg.Logger.Info("lease", "key", l.cfg.Key, "holder", l.cfg.Holder, "leader", now)
			if l.cfg.OnChange != nil {
				l.cfg.OnChange(now)
			}
		}
	}
	defer func() {
		if wasLeader {
			setLeader(time.Time{})
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			// Hand over at once: delete only if still ours.
			if err := l.cfg.KV.Delete(rctx, l.cfg.Key, jetstream.LastRevision(myRev)); err != nil {
				l.cfg.Logger.Warn("lease not released; the other side takes over after the TTL", "key", l.cfg.Key, "err", err)
			}
		}
	}()
	for {
		value, _ := json.Marshal(leaseValue{Holder: l.cfg.Holder, Renewed: time.Now().UTC()})
		opCtx, cancel := context.WithTimeout(ctx, poll)
		switch {
		case wasLeader:
			rev, err := l.cfg.KV.Update(opCtx, l.cfg.Key, value, myRev)
			if err == nil {
				myRev, lastRenew = rev, time.Now()
				setLeader(lastRenew.Add(l.cfg.TTL / 2))
			} else if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || time.Since(lastRenew) >= l.cfg.TTL/2 {
				// Taken over, or unrenewable for too long: step down.
				l.cfg.Logger.Warn("lease lost", "key", l.cfg.Key, "err", err)
				setLeader(time.Time{})
				myRev, seenRev = 0, 0
			}
		default:
			rev, err := l.campaign(opCtx, value, &seenRev, &seenSince)
			if err != nil && ctx.Err() == nil {
				l.cfg.Logger.Debug("lease campaign", "key", l.cfg.Key, "err", err)
			}
			if rev != 0 {
				myRev, lastRenew = rev, time.Now()
				l.mu.Lock()
				l.term = rev
				l.mu.Unlock()
				setLeader(lastRenew.Add(l.cfg.TTL / 2))
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// campaign tries to take the lease: create it if absent (or deleted), or
// take it over once its revision has not moved for a TTL. It returns the
// new revision when this process became leader.
func (l *Lease) campaign(ctx context.Context, value []byte, seenRev *uint64, seenSince *time.Time) (uint64, error) {
	may := l.cfg.May == nil || l.cfg.May()
	e, err := l.cfg.KV.Get(ctx, l.cfg.Key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		// Absent, or deleted by a clean release.
		if !may {
			return 0, nil
		}
		if rev, err := l.cfg.KV.Create(ctx, l.cfg.Key, value); err == nil {
			return rev, nil
		} else if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, nil // someone else was faster
		} else {
			return 0, fmt.Errorf("bus: lease %s: create: %w", l.cfg.Key, err)
		}
	case err != nil:
		return 0, fmt.Errorf("bus: lease %s: get: %w", l.cfg.Key, err)
	}
	if e.Revision() != *seenRev {
		*seenRev, *seenSince = e.Revision(), time.Now()
		return 0, nil
	}
	if time.Since(*seenSince) < l.cfg.TTL || !may {
		return 0, nil
	}
	rev, err := l.cfg.KV.Update(ctx, l.cfg.Key, value, e.Revision())
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, nil
		}
		return 0, fmt.Errorf("bus: lease %s: take over revision %d: %w", l.cfg.Key, e.Revision(), err)
	}
	var prev leaseValue
	_ = json.Unmarshal(e.Value(), &prev) // informational only
	l.cfg.Logger.Info("lease taken over from a silent holder", "key", l.cfg.Key, "previous", prev.Holder)
	return rev, nil
}

// LeaseHolderOf is the holder named in a lease key's value ("" when the
// value is not a lease).
func LeaseHolderOf(value []byte) string {
	var v leaseValue
	if json.Unmarshal(value, &v) != nil {
		return ""
	}
	return v.Holder
}
