package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// Defaults of RemoteOptions.
const (
	DefaultRemoteTimeout           = 30 * time.Second
	DefaultRemoteMaxResponseBytes  = 256 << 20
	DefaultRemoteMaxSamplesPerSend = 10_000
	remoteWriteAttempts            = 4 // one request and three retries
	remoteWriteMinBackoff          = 50 * time.Millisecond
	remoteWriteMaxBackoff          = time.Second
)

// Reasons of meshlens_store_remote_query_errors_total and
// meshlens_store_remote_write_errors_total.
const (
	reasonHTTP     = "http"
	reasonStatus   = "status"
	reasonDecode   = "decode"
	reasonTooLarge = "too_large"
	reasonTimeout  = "timeout"
)

var (
	// ErrReadOnly is returned by the appender of a remote store opened
	// without a WriteURL.
	ErrReadOnly = errors.New("store: remote store is read-only (no write URL)")
	// ErrNotSupported is returned for a sample kind a remote store cannot
	// send: remote write 1.0 as meshlens speaks it carries float samples only.
	ErrNotSupported = errors.New("store: not supported by a remote store")
	errTooLarge     = errors.New("response too large")
)

// RemoteOptions configure a Store over an external Prometheus-compatible
// TSDB. Zero fields take their defaults.
type RemoteOptions struct {
	// QueryURL is the TSDB's base URL, e.g. http://vm:8428 or
	// http://prometheus:9090: queries go to QueryURL/api/v1/....
	QueryURL string
	// WriteURL is the full remote-write URL, e.g.
	// http://vm:8428/api/v1/write; empty makes the store read-only.
	WriteURL string
	// BearerToken, when set, is sent as "Authorization: Bearer ...".
	BearerToken string
	// Username and Password, when Username is set, are sent as basic auth.
	Username, Password string
	// Headers are added to every request (e.g. X-Scope-OrgID for Mimir).
	Headers map[string]string
	// Timeout bounds one HTTP request: a query, or one remote-write
	// request with its retries.
	Timeout time.Duration
	// MaxResponseBytes bounds the body of one query response: a larger one
	// is an error, not an unbounded allocation.
	MaxResponseBytes int64
	// MaxSamplesPerSend bounds the samples of one remote-write request; a
	// larger commit is sent as several.
	MaxSamplesPerSend int
	// MaxSamples, QueryTimeout and LookbackDelta configure the PromQL
	// engine as in Options.
	MaxSamples    int
	QueryTimeout  time.Duration
	LookbackDelta time.Duration
	// Registerer receives the engine's and the store's metrics; nil
	// registers nothing.
	Registerer prometheus.Registerer
	// Logger; nil discards.
	Logger *slog.Logger
	// Client; nil uses a client of its own.
	Client *http.Client
}

func (o *RemoteOptions) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = DefaultRemoteTimeout
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultRemoteMaxResponseBytes
	}
	if o.MaxSamplesPerSend <= 0 {
		o.MaxSamplesPerSend = DefaultRemoteMaxSamplesPerSend
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Client == nil {
		// Requests are bounded by a context deadline of Timeout each.
		o.Client = &http.Client{}
	}
}

// storeOptions are the Options the engine and the Store's own helpers read.
func (o *RemoteOptions) storeOptions() Options {
	so := Options{
		MaxSamples:    o.MaxSamples,
		QueryTimeout:  o.QueryTimeout,
		LookbackDelta: o.LookbackDelta,
		Registerer:    o.Registerer,
		Logger:        o.Logger,
	}
	so.setDefaults()
	return so
}

// OpenRemote opens a Store without a local TSDB: queries read the external
// TSDB at opts.QueryURL through its Prometheus HTTP API, and appenders write
// to opts.WriteURL by remote write, synchronously at Commit.
func OpenRemote(opts RemoteOptions) (*Store, error) {
	opts.setDefaults()
	queryURL, err := parseRemoteURL("query", opts.QueryURL)
	if err != nil {
		return nil, err
	}
	writeURL := ""
	if opts.WriteURL != "" {
		if writeURL, err = parseRemoteURL("write", opts.WriteURL); err != nil {
			return nil, err
		}
	}
	s := &Store{opts: opts.storeOptions(), parser: newParser()}
	if s.metrics, err = newStoreMetrics(opts.Registerer, s); err != nil {
		return nil, err
	}
	rm, err := newRemoteMetrics(opts.Registerer)
	if err != nil {
		s.metrics.unregister()
		return nil, err
	}
	auth := httpAuth{bearerToken: opts.BearerToken, username: opts.Username, password: opts.Password, headers: opts.Headers}
	s.queryable = &queryAPI{
		baseURL:  strings.TrimSuffix(queryURL, "/"),
		client:   opts.Client,
		auth:     auth,
		timeout:  opts.Timeout,
		maxBytes: opts.MaxResponseBytes,
		metrics:  rm,
	}
	rw := &remoteAppendable{timeout: opts.Timeout, maxPerSend: opts.MaxSamplesPerSend, metrics: rm}
	if writeURL != "" {
		rw.endpoint = &writeEndpoint{url: writeURL, client: opts.Client, auth: auth}
	}
	s.appendable = rw
	s.engine = newEngine(s.opts, s.parser)
	return s, nil
}

func parseRemoteURL(what, raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("store: remote %s url %q: %w", what, raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("store: remote %s url %q: want http(s)://host[:port][/path]", what, raw)
	}
	return u.String(), nil
}

type remoteMetrics struct {
	queries      prometheus.Counter
	queryErrors  *prometheus.CounterVec
	writeSamples prometheus.Counter
	writeErrors  *prometheus.CounterVec
}

func newRemoteMetrics(reg prometheus.Registerer) (*remoteMetrics, error) {
	m := &remoteMetrics{
		queries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_store_remote_queries_total",
			Help: "HTTP API requests (queries, label names and values) sent to the remote TSDB.",
		}),
		queryErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_store_remote_query_errors_total",
			Help: "Failed requests to the remote TSDB's HTTP API, by reason: http (no answer, or a non-2xx status without a Prometheus error body), status (the TSDB answered status error), decode (malformed or unsupported response), too_large (response over the size bound), timeout.",
		}, []string{"reason"}),
		writeSamples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_store_remote_write_samples_total",
			Help: "Samples the remote TSDB acknowledged from synchronous remote-write commits.",
		}),
		writeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_store_remote_write_errors_total",
			Help: "Failed remote-write requests of commits, after retries, by reason: http (no answer), status (non-2xx), timeout.",
		}, []string{"reason"}),
	}
	for _, r := range []string{reasonHTTP, reasonStatus, reasonDecode, reasonTooLarge, reasonTimeout} {
		m.queryErrors.WithLabelValues(r)
	}
	for _, r := range []string{reasonHTTP, reasonStatus, reasonTimeout} {
		m.writeErrors.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{m.queries, m.queryErrors, m.writeSamples, m.writeErrors} {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, fmt.Errorf("store: register remote metrics (one store per registry): %w", err)
		}
		done = append(done, c)
	}
	return m, nil
}

// isTimeout tells a deadline (ours or the network's) from other failures.
func isTimeout(err error) bool {
	var nerr net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &nerr) && nerr.Timeout()
}

// --- Reading: the Prometheus HTTP query API as a storage.Queryable.

// queryAPI reads a TSDB through its Prometheus HTTP API. It is safe for
// concurrent use.
type queryAPI struct {
	baseURL  string
	client   *http.Client
	auth     httpAuth
	timeout  time.Duration
	maxBytes int64
	metrics  *remoteMetrics
}

// apiError is a failed API request with the reason it is counted under.
type apiError struct {
	reason string
	err    error
}

func (e *apiError) Error() string { return e.err.Error() }
func (e *apiError) Unwrap() error { return e.err }

// apiResponse is the envelope of every Prometheus API answer.
type apiResponse[T any] struct {
	Status    string `json:"status"`
	Data      T      `json:"data"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
}

// Querier opens a querier over [mint, maxt]; it makes no request until used.
func (q *queryAPI) Querier(mint, maxt int64) (storage.Querier, error) {
	return &remoteQuerier{api: q, mint: mint, maxt: maxt}, nil
}

// call sends one API request and decodes its data into out, counting the
// request and, by reason, its failure.
func (q *queryAPI) call(ctx context.Context, method, path string, form url.Values, out any) error {
	q.metrics.queries.Inc()
	err := q.do(ctx, method, path, form, out)
	var aerr *apiError
	// A caller that gave up is no failure of the TSDB: not counted.
	if errors.As(err, &aerr) && !errors.Is(err, context.Canceled) {
		q.metrics.queryErrors.WithLabelValues(aerr.reason).Inc()
	}
	return err
}

func (q *queryAPI) do(ctx context.Context, method, path string, form url.Values, out any) error {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	u := q.baseURL + path
	req, err := q.newRequest(ctx, method, u, form)
	if err != nil {
		return fmt.Errorf("store: remote query %s: %w", u, err)
	}
	resp, err := q.client.Do(req)
	if err != nil {
		return q.failure(u, "", err)
	}
	defer resp.Body.Close()
	body := &boundedReader{r: resp.Body, left: q.maxBytes}
	if resp.StatusCode/100 != 2 {
		return q.statusFailure(u, resp.Status, body)
	}
	return q.decode(u, resp.Status, body, out)
}

func (q *queryAPI) newRequest(ctx context.Context, method, u string, form url.Values) (*http.Request, error) {
	var req *http.Request
	var err error
	if method == http.MethodPost {
		req, err = http.NewRequestWithContext(ctx, method, u, strings.NewReader(form.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		req, err = http.NewRequestWithContext(ctx, method, u+"?"+form.Encode(), nil)
	}
	if err != nil {
		return nil, err
	}
	q.auth.apply(req)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", remoteWriteUserAgent)
	return req, nil
}

// decode reads a success envelope whose data goes straight into out: the
// body is never held in memory whole.
func (q *queryAPI) decode(u, status string, body io.Reader, out any) error {
	env := apiResponse[any]{Data: out}
	if err := json.NewDecoder(body).Decode(&env); err != nil {
		return q.failure(u, status, err)
	}
	if env.Status != "success" {
		return &apiError{reasonStatus, fmt.Errorf("store: remote query %s: %s: status %q: %s: %s", u, status, env.Status, env.ErrorType, env.Error)}
	}
	return nil
}

// statusFailure reads what a non-2xx answer says: a Prometheus error body
// is the TSDB refusing the request, anything else a failure on the way.
func (q *queryAPI) statusFailure(u, status string, body io.Reader) error {
	msg, _ := io.ReadAll(io.LimitReader(body, 4<<10))
	var env apiResponse[json.RawMessage]
	if json.Unmarshal(msg, &env) == nil && env.Status == "error" {
		return &apiError{reasonStatus, fmt.Errorf("store: remote query %s: %s: %s: %s", u, status, env.ErrorType, env.Error)}
	}
	return &apiError{reasonHTTP, fmt.Errorf("store: remote query %s: %s: %s", u, status, errorBodyText(msg))}
}

// failure classifies an error of the request or of reading its answer.
func (q *queryAPI) failure(u, status string, err error) error {
	reason := reasonHTTP
	switch {
	case errors.Is(err, errTooLarge):
		reason = reasonTooLarge
		err = fmt.Errorf("%w: over %d bytes", err, q.maxBytes)
	case isTimeout(err):
		reason = reasonTimeout
	case status != "":
		reason = reasonDecode
	}
	if status != "" {
		return &apiError{reason, fmt.Errorf("store: remote query %s: %s: %w", u, status, err)}
	}
	return &apiError{reason, fmt.Errorf("store: remote query %s: %w", u, err)}
}

func errorBodyText(b []byte) string {
	if len(b) > maxErrorBodyBytes {
		b = b[:maxErrorBodyBytes]
	}
	return strings.TrimSpace(string(b))
}

// boundedReader fails with errTooLarge once more than left bytes are read,
// so that a huge answer is an error rather than an allocation.
type boundedReader struct {
	r    io.Reader
	left int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, errTooLarge
	}
	return n, err
}

// remoteQuerier reads [mint, maxt] of the remote TSDB.
type remoteQuerier struct {
	api        *queryAPI
	mint, maxt int64
}

// matrixData is the data of an instant query of a range-vector selector.
type matrixData struct {
	ResultType string       `json:"resultType"`
	Result     model.Matrix `json:"result"`
}

// Select fetches the raw samples of the selected series: an instant query
// of the range-vector selector {matchers}[range] at the range's end, which
// Prometheus and VictoriaMetrics both answer with every sample in it.
func (q *remoteQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, matchers ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		// The engine's hints name the range one selector needs, often far
		// less than the querier's.
		mint, maxt = max(mint, hints.Start), min(maxt, hints.End)
	}
	mint, maxt = clampTime(mint), clampTime(maxt)
	if mint > maxt {
		return storage.EmptySeriesSet()
	}
	form := url.Values{
		"query": {fmt.Sprintf("%s[%dms]", selector(matchers), maxt-mint+1)},
		"time":  {formatTime(maxt)},
	}
	var data matrixData
	if err := q.api.call(ctx, http.MethodPost, "/api/v1/query", form, &data); err != nil {
		return storage.ErrSeriesSet(err)
	}
	set, err := q.api.seriesSet(data, mint, maxt)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	if sortSeries {
		slices.SortFunc(set.series, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	}
	return set
}

// seriesSet turns a query answer into series of the samples within
// [mint, maxt]: Prometheus before 3.0 also returns a sample at the range's
// exclusive start.
func (q *queryAPI) seriesSet(data matrixData, mint, maxt int64) (*listSeriesSet, error) {
	u := q.baseURL + "/api/v1/query"
	if data.ResultType != "matrix" {
		q.metrics.queryErrors.WithLabelValues(reasonDecode).Inc()
		return nil, fmt.Errorf("store: remote query %s: result type %q, want matrix", u, data.ResultType)
	}
	set := &listSeriesSet{i: -1, series: make([]storage.Series, 0, len(data.Result))}
	for _, ss := range data.Result {
		if len(ss.Histograms) > 0 {
			q.metrics.queryErrors.WithLabelValues(reasonDecode).Inc()
			return nil, fmt.Errorf("store: remote query %s: series %s has native histogram samples: %w", u, ss.Metric, ErrNotSupported)
		}
		samples := make([]chunks.Sample, 0, len(ss.Values))
		last := int64(math.MinInt64)
		for _, p := range ss.Values {
			t, v := int64(p.Timestamp), float64(p.Value)
			// A TSDB holds one value per timestamp; one that answers with
			// duplicates (a re-sent write) gets its first.
			if t < mint || t > maxt || t == last || value.IsStaleNaN(v) {
				continue
			}
			samples = append(samples, floatSample{t: t, f: v})
			last = t
		}
		set.series = append(set.series, storage.NewListSeries(metricLabels(ss.Metric), samples))
	}
	return set, nil
}

// LabelValues returns the sorted values of label name in series matching
// matchers (all series without matchers) within the querier's range.
func (q *remoteQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	var values []string
	err := q.api.call(ctx, http.MethodGet, "/api/v1/label/"+url.PathEscape(name)+"/values", q.labelForm(matchers), &values)
	return limitLabels(values, hints), nil, err
}

// LabelNames returns the sorted label names of series matching matchers
// (all series without matchers) within the querier's range.
func (q *remoteQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	var names []string
	err := q.api.call(ctx, http.MethodGet, "/api/v1/labels", q.labelForm(matchers), &names)
	return limitLabels(names, hints), nil, err
}

// labelForm names the range explicitly: VictoriaMetrics otherwise answers
// for the current day only.
func (q *remoteQuerier) labelForm(matchers []*labels.Matcher) url.Values {
	form := url.Values{"start": {formatTime(clampTime(q.mint))}, "end": {formatTime(clampTime(q.maxt))}}
	if len(matchers) > 0 {
		form.Set("match[]", selector(matchers))
	}
	return form
}

func limitLabels(v []string, hints *storage.LabelHints) []string {
	slices.Sort(v)
	if hints != nil && hints.Limit > 0 && len(v) > hints.Limit {
		v = v[:hints.Limit]
	}
	return v
}

func (q *remoteQuerier) Close() error { return nil }

// selector writes matchers as a PromQL series selector. Values are quoted
// as Go string literals, which PromQL and MetricsQL both read back exactly.
func selector(matchers []*labels.Matcher) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range matchers {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m.Name)
		b.WriteString(m.Type.String())
		b.WriteString(strconv.Quote(remoteMatcherValue(m)))
	}
	b.WriteByte('}')
	return b.String()
}

// remoteMatcherValue is the value to send for m. The embedded engine
// (Prometheus 3) lets "." in a regexp match a newline; Prometheus 2 and
// VictoriaMetrics do not unless the regexp says so.
func remoteMatcherValue(m *labels.Matcher) string {
	if m.Type != labels.MatchRegexp && m.Type != labels.MatchNotRegexp {
		return m.Value
	}
	v := m.Value
	if strings.Contains(v, ".") {
		v = "(?s:" + v + ")"
	}
	if _, err := syntax.Parse("^(?:"+v+")$", syntax.Perl); err == nil {
		return v
	}
	// A \Q without its \E quotes everything after it, the anchors a TSDB
	// wraps the regexp in too: send the regexp in its canonical form, where
	// "." is written (?s:.).
	if re, err := syntax.Parse(m.Value, syntax.Perl|syntax.DotNL); err == nil {
		return re.String()
	}
	return m.Value
}

// Query API times are seconds; meshlens samples start after 1970 and end
// well before year 10000, beyond which the TSDBs reject times.
const maxQueryTime = 253402300799999 // 9999-12-31T23:59:59.999Z

func clampTime(ms int64) int64 { return min(max(ms, 0), maxQueryTime) }

func formatTime(ms int64) string {
	return strconv.FormatInt(ms/1000, 10) + "." + fmt.Sprintf("%03d", ms%1000)
}

func metricLabels(m model.Metric) labels.Labels {
	b := labels.NewScratchBuilder(len(m))
	for k, v := range m {
		b.Add(string(k), string(v))
	}
	b.Sort()
	return b.Labels()
}

// listSeriesSet iterates series held in memory.
type listSeriesSet struct {
	series []storage.Series
	i      int
}

func (s *listSeriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *listSeriesSet) At() storage.Series                { return s.series[s.i] }
func (s *listSeriesSet) Err() error                        { return nil }
func (s *listSeriesSet) Warnings() annotations.Annotations { return nil }

// floatSample is a chunks.Sample of a float value.
type floatSample struct {
	t int64
	f float64
}

func (s floatSample) T() int64                      { return s.t }
func (s floatSample) ST() int64                     { return 0 }
func (s floatSample) F() float64                    { return s.f }
func (s floatSample) H() *histogram.Histogram       { return nil }
func (s floatSample) FH() *histogram.FloatHistogram { return nil }
func (s floatSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s floatSample) Copy() chunks.Sample           { return s }

// --- Writing: synchronous remote write as a storage.Appendable.

// remoteAppendable opens appenders that send their samples at Commit.
type remoteAppendable struct {
	endpoint   *writeEndpoint // nil: read-only
	timeout    time.Duration
	maxPerSend int
	metrics    *remoteMetrics
}

func (r *remoteAppendable) Appender(ctx context.Context) storage.Appender {
	if ctx == nil {
		ctx = context.Background()
	}
	return &remoteAppender{ctx: ctx, w: r}
}

// remoteAppender collects float samples and sends them at Commit. It is
// used by one goroutine only, as every storage.Appender.
type remoteAppender struct {
	ctx   context.Context
	w     *remoteAppendable
	batch []pendingSample
}

func (a *remoteAppender) Append(_ storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	if a.w.endpoint == nil {
		return 0, ErrReadOnly
	}
	a.batch = append(a.batch, pendingSample{lset: l, t: t, v: v})
	return 0, nil
}

// Commit sends the transaction's samples in requests of at most
// MaxSamplesPerSend, each retried a few times within Timeout on a
// recoverable failure. It returns nil only when every request was
// acknowledged. After an error some requests may have landed: committing
// the same samples again is safe, as both TSDBs take an identical sample
// twice.
func (a *remoteAppender) Commit() error {
	batch := a.batch
	a.batch = nil
	if a.w.endpoint == nil {
		return ErrReadOnly
	}
	for sent := 0; sent < len(batch); {
		part := batch[sent:min(sent+a.w.maxPerSend, len(batch))]
		if err := a.w.send(a.ctx, part); err != nil {
			return fmt.Errorf("store: remote write commit: %d of %d samples acknowledged: %w", sent, len(batch), err)
		}
		sent += len(part)
	}
	return nil
}

func (w *remoteAppendable) send(ctx context.Context, part []pendingSample) error {
	body, err := encodeWriteRequest(part)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	retry := retryPolicy{minBackoff: remoteWriteMinBackoff, maxBackoff: remoteWriteMaxBackoff, maxAttempts: remoteWriteAttempts}
	err = w.endpoint.sendWithRetry(ctx, body, retry, func(error, time.Duration) {})
	if err != nil {
		var serr statusError
		reason := reasonHTTP
		switch {
		case isTimeout(err):
			reason = reasonTimeout
		case errors.As(err, &serr):
			reason = reasonStatus
		}
		w.metrics.writeErrors.WithLabelValues(reason).Inc()
		return err
	}
	w.metrics.writeSamples.Add(float64(len(part)))
	return nil
}

// Rollback discards the transaction's samples: nothing was sent yet.
func (a *remoteAppender) Rollback() error {
	a.batch = nil
	return nil
}

func (a *remoteAppender) SetOptions(*storage.AppendOptions) {}

func (a *remoteAppender) AppendExemplar(storage.SeriesRef, labels.Labels, exemplar.Exemplar) (storage.SeriesRef, error) {
	return 0, fmt.Errorf("append exemplar: %w", ErrNotSupported)
}

func (a *remoteAppender) AppendHistogram(storage.SeriesRef, labels.Labels, int64, *histogram.Histogram, *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return 0, fmt.Errorf("append native histogram: %w", ErrNotSupported)
}

func (a *remoteAppender) AppendHistogramSTZeroSample(storage.SeriesRef, labels.Labels, int64, int64, *histogram.Histogram, *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return 0, fmt.Errorf("append native histogram: %w", ErrNotSupported)
}

func (a *remoteAppender) UpdateMetadata(storage.SeriesRef, labels.Labels, metadata.Metadata) (storage.SeriesRef, error) {
	return 0, fmt.Errorf("update metadata: %w", ErrNotSupported)
}

func (a *remoteAppender) AppendSTZeroSample(storage.SeriesRef, labels.Labels, int64, int64) (storage.SeriesRef, error) {
	return 0, fmt.Errorf("append start-timestamp zero sample: %w", ErrNotSupported)
}
