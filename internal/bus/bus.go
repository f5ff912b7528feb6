// Package bus is meshlens's transport: the embedded NATS server with
// JetStream, the streams and KV buckets the data path uses, and client
// connections. It owns no meshlens data types; agents, the controller and the
// aggregator use the names in names.go.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EmbeddedConfig configures the in-process NATS server of the embedded
// default deployment.
type EmbeddedConfig struct {
	// Addr is host:port to listen on; port -1 picks a free one (tests).
	Addr string
	// StoreDir holds JetStream's files: results survive a restart.
	StoreDir string
	// MaxStore caps JetStream's disk use in bytes (0: NATS default).
	MaxStore int64
	// Options is applied last, for TLS and accounts (see creds.go).
	Configure func(*server.Options)
	Logger    *slog.Logger
}

// Embedded is a running in-process NATS server.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts the server and waits until it accepts connections.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("bus: nats address %q: %w", cfg.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("bus: nats address %q: bad port: %w", cfg.Addr, err)
	}
	opts := &server.Options{
		ServerName:            "meshlens",
		Host:                  host,
		Port:                  port,
		JetStream:             true,
		StoreDir:              cfg.StoreDir,
		JetStreamMaxStore:     cfg.MaxStore,
		NoSigs:                true,
		MaxPayload:            2 << 20, // a batch is at most 1 MiB; headroom for headers
		DisableShortFirstPing: true,
	}
	if cfg.Configure != nil {
		cfg.Configure(opts)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded nats on %s: %w", cfg.Addr, err)
	}
	if cfg.Logger != nil {
		srv.SetLoggerV2(&natsLogger{cfg.Logger}, false, false, false)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("bus: embedded nats on %s did not become ready", cfg.Addr)
	}
	return &Embedded{srv: srv}, nil
}

// ClientURL is the nats:// URL clients use.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Server exposes the NATS server for in-process connections and tests.
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server and waits for it.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// Connect dials NATS with meshlens's defaults: endless reconnects, since
// agents and servers must ride out a bus outage, and a name for monitoring.
func Connect(url, name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(true),
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(3),
	}, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect %s to %s: %w", name, url, err)
	}
	return nc, nil
}

// StreamSettings sizes the results stream.
type StreamSettings struct {
	// MaxAge is how long results stay in the stream: aggregators replay from
	// it after a restart, so it must exceed their recent horizon.
	MaxAge time.Duration
	// MaxBytes caps the stream (0: unlimited). When full, new batches
	// are refused, never old ones discarded: agents spool and retry, so a
	// flood delays everybody's data but destroys nobody's unread data.
	MaxBytes int64
	// Partitions: the stream stores the subjects of partitions
	// 0..Partitions-1 only, so a batch for a partition nobody aggregates
	// is refused at once instead of kept unread for MaxAge (0: every
	// subject under the prefix, for tests that pick their own).
	Partitions int
	// MaxMsgSize refuses larger batches at the bus (0: the server's
	// default); the server sets it to wire.MaxBatchBytes and some room.
	MaxMsgSize int32
	// Duplicates is JetStream's de-duplication window for batch ids.
	Duplicates time.Duration
	// Replicas for clustered JetStream (1 embedded).
	Replicas int
}

func (s StreamSettings) withDefaults() StreamSettings {
	if s.MaxAge <= 0 {
		s.MaxAge = 24 * time.Hour
	}
	if s.Duplicates <= 0 {
		s.Duplicates = 10 * time.Minute
	}
	if s.Replicas <= 0 {
		s.Replicas = 1
	}
	return s
}

// EnsureStreams creates or updates the results stream and the KV buckets.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, s StreamSettings) error {
	s = s.withDefaults()
	subjects := []string{ResultsSubjectPrefix + ".>"}
	if s.Partitions > 0 {
		subjects = subjects[:0]
		for p := range s.Partitions {
			subjects = append(subjects, PartitionSubjects(p))
		}
	}
	discard := jetstream.DiscardOld // (only MaxAge applies)
	if s.MaxBytes > 0 {
		discard = jetstream.DiscardNew
	}
	cfg := jetstream.StreamConfig{
		Name:        ResultsStream,
		Description: "meshlens agent probe result batches",
		Subjects:    subjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      s.MaxAge,
		MaxBytes:    s.MaxBytes,
		MaxMsgSize:  s.MaxMsgSize,
		Duplicates:  s.Duplicates,
		Replicas:    s.Replicas,
		Discard:     discard,
	}
	err := ensureStream(ctx, js, cfg, func(have jetstream.StreamConfig) (bool, error) { return sameStream(have, cfg), nil })
	if err != nil {
		return fmt.Errorf("bus: stream %s: %w", ResultsStream, err)
	}
	for _, kv := range []jetstream.KeyValueConfig{
		{Bucket: PinglistBucket, Description: "per-host pinglists", History: 1, Replicas: s.Replicas, Storage: jetstream.FileStorage},
		{Bucket: EvidenceBucket, Description: "evidence on demand: peers each host probes harder for a while", History: 1, Replicas: s.Replicas, Storage: jetstream.FileStorage},
		{Bucket: FleetBucket, Description: "fleet-wide agent settings", History: 1, Replicas: s.Replicas, Storage: jetstream.FileStorage},
		{Bucket: StateBucket, Description: "server state: checkpoints, leases", History: 1, Replicas: s.Replicas, Storage: jetstream.FileStorage},
	} {
		actx, cancel := context.WithTimeout(ctx, apiAttempt)
		_, err := js.KeyValue(actx, kv.Bucket)
		cancel()
		if err == nil {
			continue // an existing bucket is used as it is
		}
		if err := retryAPI(ctx, func(ctx context.Context) error { _, err := js.CreateOrUpdateKeyValue(ctx, kv); return err }); err != nil {
			return fmt.Errorf("bus: kv bucket %s: %w", kv.Bucket, err)
		}
	}
	return nil
}

// apiAttempt bounds one JetStream API call of the setup: on a cluster,
// two processes creating the same stream at the same moment could each
// wait for an answer that never came (measured: a minute, three times in
// three; nats.go#949) while the stream had been created.
const apiAttempt = 5 * time.Second

// retryAPI calls fn with a context bounded by apiAttempt until it succeeds
// or ctx ends; only a timeout of the attempt is retried.
func retryAPI(ctx context.Context, fn func(ctx context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, apiAttempt)
		err := fn(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !timedOut(err) {
			return err
		}
	}
}

// sameStream reports whether have already is what EnsureStreams would
// set.
func sameStream(have, want jetstream.StreamConfig) bool {
	// The server reports "no limit" as -1 where it was asked for 0.
	return slices.Equal(have.Subjects, want.Subjects) && have.MaxAge == want.MaxAge && max(have.MaxBytes, 0) == max(want.MaxBytes, 0) &&
		max(have.MaxMsgSize, 0) == max(want.MaxMsgSize, 0) && have.Duplicates == want.Duplicates && have.Replicas == want.Replicas &&
		have.Discard == want.Discard && have.Retention == want.Retention && have.Storage == want.Storage
}

func timedOut(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
}

// ErrPartitionsDisagree: a process was configured with another partition
// count than the streams on the bus were created with.
var ErrPartitionsDisagree = errors.New("partition count disagrees with the stream's")

// RollupStreamSettings sizes the rollups stream.
type RollupStreamSettings struct {
	Partitions int
	// MaxAge: analyzers read recent windows only; a day leaves room to
	// investigate (default 24h).
	MaxAge     time.Duration
	MaxMsgSize int32
	Replicas   int
}

// EnsureRollupStream creates the rollups stream with one subject per
// partition, or checks that the existing one has exactly s.Partitions:
// aggregators and analyzers that disagree on the partitions would lose
// windows or never complete one, so that is refused (ErrPartitionsDisagree).
func EnsureRollupStream(ctx context.Context, js jetstream.JetStream, s RollupStreamSettings) error {
	if s.Partitions < 1 {
		return fmt.Errorf("bus: stream %s: %d partitions", RollupsStream, s.Partitions)
	}
	if s.MaxAge <= 0 {
		s.MaxAge = 24 * time.Hour
	}
	if s.Replicas <= 0 {
		s.Replicas = 1
	}
	subjects := make([]string, s.Partitions)
	for p := range subjects {
		subjects[p] = RollupSubject(p)
	}
	cfg := jetstream.StreamConfig{
		Name:        RollupsStream,
		Description: "meshlens sealed windows of partitioned aggregators",
		Subjects:    subjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      s.MaxAge,
		MaxMsgSize:  s.MaxMsgSize,
		Duplicates:  10 * time.Minute,
		Replicas:    s.Replicas,
		Discard:     jetstream.DiscardOld,
	}
	err := ensureStream(ctx, js, cfg, func(have jetstream.StreamConfig) (bool, error) {
		if !slices.Equal(have.Subjects, subjects) {
			return false, fmt.Errorf("stream has %d partition subjects, this process is configured with %d partitions: %w", len(have.Subjects), s.Partitions, ErrPartitionsDisagree)
		}
		return true, nil // used as it is
	})
	if err != nil {
		return fmt.Errorf("bus: stream %s: %w", RollupsStream, err)
	}
	return nil
}

// ensureStream creates cfg's stream, or takes the existing one when
// current says it is as wanted, else updates it. Processes sharing a bus
// start together: whoever comes first creates the stream and the others
// find it. A create or update that races another one's may go
// unanswered on a cluster, and so may every later one from the same
// process (seen: a minute, until the setup gave up) while a request for
// the stream's info is answered: so the stream is looked up before each
// attempt, each attempt is bounded by apiAttempt, and a stream already
// as wanted is not updated.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, current func(have jetstream.StreamConfig) (bool, error)) error {
	for {
		actx, cancel := context.WithTimeout(ctx, apiAttempt)
		st, err := js.Stream(actx, cfg.Name)
		cancel()
		switch {
		case err == nil:
			ok, err := current(st.CachedInfo().Config)
			if err != nil || ok {
				return err
			}
			return retryAPI(ctx, func(ctx context.Context) error {
				_, err := js.UpdateStream(ctx, cfg)
				return err
			})
		case ctx.Err() != nil:
			return ctx.Err()
		case !errors.Is(err, jetstream.ErrStreamNotFound) && !timedOut(err):
			return err
		}
		actx, cancel = context.WithTimeout(ctx, apiAttempt)
		_, err = js.CreateStream(actx, cfg)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && !timedOut(err):
			return err
		}
	}
}

// CheckResultPartitions refuses a partition count other than the results
// stream's, when the stream exists with per-partition subjects.
func CheckResultPartitions(ctx context.Context, js jetstream.JetStream, partitions int) error {
	st, err := js.Stream(ctx, ResultsStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	} else if err != nil {
		return fmt.Errorf("bus: stream %s: %w", ResultsStream, err)
	}
	have := st.CachedInfo().Config.Subjects
	if len(have) == 1 && have[0] == ResultsSubjectPrefix+".>" {
		return nil
	}
	if len(have) != partitions {
		return fmt.Errorf("bus: stream %s has %d partition subjects, this process is configured with %d partitions: %w", ResultsStream, len(have), partitions, ErrPartitionsDisagree)
	}
	return nil
}

// IsNotFound reports a missing KV key or bucket.
func IsNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrBucketNotFound)
}

// natsLogger routes the NATS server's log through slog.
type natsLogger struct{ l *slog.Logger }

func (n *natsLogger) Noticef(format string, v ...any) {
	n.l.Debug(fmt.Sprintf(format, v...), "component", "nats")
}
func (n *natsLogger) Warnf(format string, v ...any) {
	n.l.Warn(fmt.Sprintf(format, v...), "component", "nats")
}
func (n *natsLogger) Fatalf(format string, v ...any) {
	n.l.Error(fmt.Sprintf(format, v...), "component", "nats")
}
func (n *natsLogger) Errorf(format string, v ...any) {
	n.l.Error(fmt.Sprintf(format, v...), "component", "nats")
}
func (n *natsLogger) Debugf(format string, v ...any) {
	n.l.Debug(fmt.Sprintf(format, v...), "component", "nats")
}
func (n *natsLogger) Tracef(format string, v ...any) {}
