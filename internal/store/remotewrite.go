package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// Defaults of RemoteWriteConfig.
const (
	DefaultRemoteWriteQueueCapacity  = 100_000
	DefaultRemoteWriteMaxPerSend     = 2_000
	DefaultRemoteWriteFlushInterval  = time.Second
	DefaultRemoteWriteTimeout        = 30 * time.Second
	DefaultRemoteWriteMinBackoff     = 30 * time.Millisecond
	DefaultRemoteWriteMaxBackoff     = 5 * time.Second
	DefaultRemoteWriteShutdownFlush  = 5 * time.Second
	remoteWriteVersionHeader         = "X-Prometheus-Remote-Write-Version"
	remoteWriteVersion               = "0.1.0"
	remoteWriteUserAgent             = "meshlens-remote-write/1"
	maxErrorBodyBytes                = 512
	remoteWriteResultSent            = "sent"
	remoteWriteResultFailed          = "failed"
	remoteWriteResultDropped         = "dropped"
	remoteWriteResultRetriedAttempts = "retried"
)

// RemoteWriteConfig configures the forwarder. Zero fields take defaults.
type RemoteWriteConfig struct {
	// URL of the receiver, e.g. http://mimir:9009/api/v1/push or
	// http://prometheus:9090/api/v1/write.
	URL string
	// BearerToken, when set, is sent as "Authorization: Bearer ...".
	BearerToken string
	// Headers are added to every request (e.g. X-Scope-OrgID for Mimir).
	Headers map[string]string
	// ExternalLabels are added to every series sent that lacks the label,
	// as Prometheus's external_labels: servers writing to one receiver
	// keep their series apart. The local TSDB does not get them.
	ExternalLabels labels.Labels
	// QueueCapacity bounds the samples waiting to be sent. When the receiver
	// is away longer than the queue lasts, new samples are dropped and
	// counted: the local TSDB still has them.
	QueueCapacity int
	// MaxSamplesPerSend bounds one request.
	MaxSamplesPerSend int
	// FlushInterval is the longest a sample waits for a batch to fill.
	FlushInterval time.Duration
	// Timeout of one HTTP request.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries of a
	// recoverable failure (network error, 5xx, 429).
	MinBackoff, MaxBackoff time.Duration
	// ShutdownFlush is how long Run keeps sending the queue after ctx ends.
	ShutdownFlush time.Duration
	// Client; nil uses a client with Timeout.
	Client *http.Client
}

func (c *RemoteWriteConfig) setDefaults() {
	if c.QueueCapacity <= 0 {
		c.QueueCapacity = DefaultRemoteWriteQueueCapacity
	}
	if c.MaxSamplesPerSend <= 0 {
		c.MaxSamplesPerSend = DefaultRemoteWriteMaxPerSend
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultRemoteWriteFlushInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultRemoteWriteTimeout
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultRemoteWriteMinBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(DefaultRemoteWriteMaxBackoff, c.MinBackoff)
	}
	if c.ShutdownFlush <= 0 {
		c.ShutdownFlush = DefaultRemoteWriteShutdownFlush
	}
	if c.Client == nil {
		c.Client = &http.Client{Timeout: c.Timeout}
	}
}

// RemoteWriter forwards committed samples with the Prometheus remote-write
// 1.0 protocol: snappy-compressed protobuf prompb.WriteRequest. enqueue is
// safe for concurrent use; Run must run in exactly one goroutine.
type RemoteWriter struct {
	cfg      RemoteWriteConfig
	endpoint writeEndpoint
	logger   *slog.Logger

	mu    sync.Mutex
	queue []pendingSample
	wake  chan struct{} // capacity 1: "the queue has a full batch"

	samples    *prometheus.CounterVec // result: sent, failed, dropped, retried
	queued     prometheus.GaugeFunc
	reg        prometheus.Registerer
	collectors []prometheus.Collector
}

// NewRemoteWriter checks cfg and registers the forwarder's metrics on reg
// (nil registers nothing).
func NewRemoteWriter(cfg RemoteWriteConfig, reg prometheus.Registerer, logger *slog.Logger) (*RemoteWriter, error) {
	cfg.setDefaults()
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("store: remote write url %q: %w", cfg.URL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("store: remote write url %q: want http(s)://host[:port]/path", cfg.URL)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &RemoteWriter{
		cfg: cfg,
		endpoint: writeEndpoint{
			url:    u.String(),
			client: cfg.Client,
			auth:   httpAuth{bearerToken: cfg.BearerToken, headers: cfg.Headers},
		},
		logger: logger,
		wake:   make(chan struct{}, 1),
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_remote_write_samples_total",
			Help: "Samples handled by the remote-write forwarder, by result: sent (acknowledged by the receiver), failed (rejected with a non-retryable status), dropped (queue full or unsent at shutdown), retried (re-sent after a recoverable failure).",
		}, []string{"result"}),
	}
	for _, r := range []string{remoteWriteResultSent, remoteWriteResultFailed, remoteWriteResultDropped, remoteWriteResultRetriedAttempts} {
		w.samples.WithLabelValues(r)
	}
	w.queued = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meshlens_remote_write_queue_samples",
		Help: "Samples waiting in the remote-write queue.",
	}, func() float64 { return float64(w.QueueLen()) })
	if reg != nil {
		w.reg = reg
		for _, c := range []prometheus.Collector{w.samples, w.queued} {
			if err := reg.Register(c); err != nil {
				w.unregister()
				return nil, fmt.Errorf("store: register remote write metrics: %w", err)
			}
			w.collectors = append(w.collectors, c)
		}
	}
	return w, nil
}

func (w *RemoteWriter) unregister() {
	for _, c := range w.collectors {
		w.reg.Unregister(c)
	}
	w.collectors = nil
}

// QueueLen is the number of samples waiting to be sent.
func (w *RemoteWriter) QueueLen() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}

// enqueue adds the samples of one committed transaction. What does not fit
// is dropped and counted rather than blocking the writer: the aggregator
// must never stall because a remote TSDB is slow.
func (w *RemoteWriter) enqueue(batch []pendingSample) {
	if !w.cfg.ExternalLabels.IsEmpty() {
		b := labels.NewBuilder(labels.EmptyLabels())
		for i := range batch {
			b.Reset(batch[i].lset)
			w.cfg.ExternalLabels.Range(func(l labels.Label) {
				if !batch[i].lset.Has(l.Name) {
					b.Set(l.Name, l.Value)
				}
			})
			batch[i].lset = b.Labels()
		}
	}
	w.mu.Lock()
	room := w.cfg.QueueCapacity - len(w.queue)
	dropped := 0
	if len(batch) > room {
		dropped = len(batch) - max(room, 0)
		batch = batch[:max(room, 0)]
	}
	w.queue = append(w.queue, batch...)
	full := len(w.queue) >= w.cfg.MaxSamplesPerSend
	w.mu.Unlock()
	if dropped > 0 {
		w.samples.WithLabelValues(remoteWriteResultDropped).Add(float64(dropped))
	}
	if full {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// take removes up to n samples from the head of the queue.
func (w *RemoteWriter) take(n int) []pendingSample {
	w.mu.Lock()
	defer w.mu.Unlock()
	n = min(n, len(w.queue))
	if n == 0 {
		return nil
	}
	out := slices.Clone(w.queue[:n])
	w.queue = w.queue[n:]
	if len(w.queue) == 0 {
		w.queue = nil // release the backing array
	}
	return out
}

// Run sends the queue until ctx ends, then keeps sending for at most
// ShutdownFlush; whatever is still queued after that is counted as dropped.
func (w *RemoteWriter) Run(ctx context.Context) error {
	ticker := time.NewTicker(w.cfg.FlushInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return w.shutdown(ctx)
		case <-ticker.C:
		case <-w.wake:
		}
		if err := w.drain(ctx); err != nil {
			return w.shutdown(ctx)
		}
	}
}

func (w *RemoteWriter) shutdown(ctx context.Context) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.ShutdownFlush)
	defer cancel()
	if err := w.drain(fctx); err != nil {
		w.logger.Warn("remote write: queue not flushed at shutdown", "err", err)
	}
	w.mu.Lock()
	left := len(w.queue)
	w.queue = nil
	w.mu.Unlock()
	if left > 0 {
		w.samples.WithLabelValues(remoteWriteResultDropped).Add(float64(left))
		w.logger.Warn("remote write: samples dropped at shutdown", "samples", left)
	}
	return nil
}

// drain sends the queue in batches of at most MaxSamplesPerSend. It
// returns an error only when ctx ended with samples in flight.
func (w *RemoteWriter) drain(ctx context.Context) error {
	for ctx.Err() == nil {
		batch := w.take(w.cfg.MaxSamplesPerSend)
		if len(batch) == 0 {
			return nil
		}
		if err := w.sendWithRetry(ctx, batch); err != nil {
			w.samples.WithLabelValues(remoteWriteResultDropped).Add(float64(len(batch)))
			return err
		}
	}
	return ctx.Err()
}

func (w *RemoteWriter) sendWithRetry(ctx context.Context, batch []pendingSample) error {
	body, err := encodeWriteRequest(batch)
	if err != nil {
		w.samples.WithLabelValues(remoteWriteResultFailed).Add(float64(len(batch)))
		w.logger.Error("remote write: encode", "samples", len(batch), "err", err)
		return nil
	}
	retry := retryPolicy{minBackoff: w.cfg.MinBackoff, maxBackoff: w.cfg.MaxBackoff}
	err = w.endpoint.sendWithRetry(ctx, body, retry, func(err error, waited time.Duration) {
		w.logger.Warn("remote write: retrying", "samples", len(batch), "after", waited, "err", err)
		w.samples.WithLabelValues(remoteWriteResultRetriedAttempts).Add(float64(len(batch)))
	})
	var rerr recoverableError
	switch {
	case err == nil:
		w.samples.WithLabelValues(remoteWriteResultSent).Add(float64(len(batch)))
		return nil
	case !errors.As(err, &rerr) && ctx.Err() == nil:
		// The receiver will never take this request (4xx): retrying would
		// block everything behind it.
		w.samples.WithLabelValues(remoteWriteResultFailed).Add(float64(len(batch)))
		w.logger.Error("remote write: rejected", "samples", len(batch), "err", err)
		return nil
	}
	return err
}

// recoverableError is a failure worth retrying: the receiver may accept the
// same request later.
type recoverableError struct {
	err        error
	retryAfter time.Duration
}

func (e recoverableError) Error() string { return e.err.Error() }
func (e recoverableError) Unwrap() error { return e.err }

// statusError is a request the receiver answered with a non-2xx status.
type statusError struct {
	code int
	err  error
}

func (e statusError) Error() string { return e.err.Error() }
func (e statusError) Unwrap() error { return e.err }

// httpAuth is what every request to a remote TSDB carries besides its body.
type httpAuth struct {
	bearerToken        string
	username, password string // basic auth when username is set
	headers            map[string]string
}

func (a httpAuth) apply(req *http.Request) {
	for k, v := range a.headers {
		req.Header.Set(k, v)
	}
	if a.bearerToken != "" {
		req.Header.Set("Authorization", "Bearer "+a.bearerToken)
	}
	if a.username != "" {
		req.SetBasicAuth(a.username, a.password)
	}
}

// writeEndpoint is a remote-write receiver. The asynchronous RemoteWriter
// and the synchronous remote appender both send through it.
type writeEndpoint struct {
	url    string
	client *http.Client
	auth   httpAuth
}

// retryPolicy bounds the retries of a recoverable failure.
type retryPolicy struct {
	minBackoff, maxBackoff time.Duration
	// maxAttempts bounds the requests sent; 0 retries until ctx ends.
	maxAttempts int
}

// sendWithRetry sends body until the receiver accepts it, refuses it for
// good (a non-recoverable error), the attempts run out, or ctx ends; the
// error is then the last failure, a recoverableError when a later attempt
// might have succeeded. retried is called before each re-send with the
// failure that caused it and the time waited.
func (e writeEndpoint) sendWithRetry(ctx context.Context, body []byte, p retryPolicy, retried func(err error, waited time.Duration)) error {
	backoff := p.minBackoff
	for attempt := 1; ; attempt++ {
		err := e.send(ctx, body)
		if err == nil {
			return nil
		}
		var rerr recoverableError
		if !errors.As(err, &rerr) || p.maxAttempts > 0 && attempt >= p.maxAttempts {
			return err
		}
		wait := backoff
		if rerr.retryAfter > 0 {
			wait = min(rerr.retryAfter, p.maxBackoff)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("store: remote write to %s: %w (last error: %w)", e.url, ctx.Err(), err)
		case <-t.C:
		}
		retried(err, wait)
		backoff = min(backoff*2, p.maxBackoff)
	}
}

// send posts one remote-write request. Network errors, 5xx and 429 are
// recoverableErrors.
func (e writeEndpoint) send(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("store: remote write request to %s: %w", e.url, err)
	}
	e.auth.apply(req)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", remoteWriteUserAgent)
	req.Header.Set(remoteWriteVersionHeader, remoteWriteVersion)
	resp, err := e.client.Do(req)
	if err != nil {
		return recoverableError{err: fmt.Errorf("store: remote write to %s: %w", e.url, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
		return nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
	err = statusError{code: resp.StatusCode, err: fmt.Errorf("store: remote write to %s: %s: %s", e.url, resp.Status, bytes.TrimSpace(msg))}
	if resp.StatusCode/100 == 5 || resp.StatusCode == http.StatusTooManyRequests {
		return recoverableError{err: err, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
	}
	return err
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// encodeWriteRequest groups samples by series, time-ordered within each
// series as receivers require, and encodes the snappy-framed body.
func encodeWriteRequest(batch []pendingSample) ([]byte, error) {
	index := make(map[uint64][]int, len(batch))
	var req prompb.WriteRequest
	for _, s := range batch {
		h := s.lset.Hash()
		pos := -1
		for _, i := range index[h] {
			if labelsEqual(req.Timeseries[i].Labels, s) {
				pos = i
				break
			}
		}
		if pos < 0 {
			pos = len(req.Timeseries)
			index[h] = append(index[h], pos)
			ts := prompb.TimeSeries{Labels: make([]prompb.Label, 0, s.lset.Len())}
			s.lset.Range(func(l labels.Label) {
				ts.Labels = append(ts.Labels, prompb.Label{Name: l.Name, Value: l.Value})
			})
			req.Timeseries = append(req.Timeseries, ts)
		}
		req.Timeseries[pos].Samples = append(req.Timeseries[pos].Samples, prompb.Sample{Value: s.v, Timestamp: s.t})
	}
	for i := range req.Timeseries {
		slices.SortStableFunc(req.Timeseries[i].Samples, func(a, b prompb.Sample) int {
			return compareInt64(a.Timestamp, b.Timestamp)
		})
	}
	raw, err := req.Marshal()
	if err != nil {
		return nil, fmt.Errorf("store: marshal write request of %d series: %w", len(req.Timeseries), err)
	}
	return snappy.Encode(nil, raw), nil
}

func labelsEqual(pl []prompb.Label, s pendingSample) bool {
	if len(pl) != s.lset.Len() {
		return false
	}
	i, eq := 0, true
	s.lset.Range(func(l labels.Label) {
		if eq && (pl[i].Name != l.Name || pl[i].Value != l.Value) {
			eq = false
		}
		i++
	})
	return eq
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
