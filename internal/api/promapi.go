package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// The Prometheus-compatible query API, written against the documented
// HTTP API (https://prometheus.io/docs/prometheus/latest/querying/api/)
// rather than importing prometheus/web/api/v1 and its dependency tree.

const maxAnnotations = 10 // per kind, as Prometheus

var (
	startTime  = time.Now()
	exprParser = parser.NewParser(parser.Options{})
)

func (s *Server) registerPrometheusAPI() {
	read := func(path string, h http.HandlerFunc) {
		s.handle("GET "+path, RoleViewer, false, compressed(h))
		s.handle("POST "+path, RoleViewer, false, compressed(h))
	}
	read("/api/v1/query", s.query)
	read("/api/v1/query_range", s.queryRange)
	read("/api/v1/labels", s.labelNames)
	read("/api/v1/series", s.series)
	read("/api/v1/query_exemplars", s.queryExemplars)
	read("/api/v1/format_query", s.formatQuery)
	s.handle("GET /api/v1/label/{name}/values", RoleViewer, false, compressed(s.labelValues))
	s.handle("GET /api/v1/metadata", RoleViewer, false, compressed(s.metadata))
	read("/api/v1/rules", s.rules)
	s.handle("GET /api/v1/alerts", RoleViewer, false, http.HandlerFunc(s.alerts))
	s.handle("GET /api/v1/status/buildinfo", RoleViewer, false, http.HandlerFunc(s.buildInfo))
	s.handle("GET /api/v1/status/runtimeinfo", RoleViewer, false, http.HandlerFunc(s.runtimeInfo))
	s.handle("GET /api/v1/status/flags", RoleViewer, false, http.HandlerFunc(s.flags))
}

// parseForm reads query and form parameters; a body over the limit is 413.
func parseForm(w http.ResponseWriter, r *http.Request) bool {
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, errorTooLarge, fmt.Errorf("request body larger than %d bytes", tooLarge.Limit))
			return false
		}
		writeError(w, errorBadData, fmt.Errorf("error parsing form values: %w", err))
		return false
	}
	return true
}

// queryContext applies the request's ?timeout, never beyond the server's.
func (s *Server) queryContext(r *http.Request) (context.Context, context.CancelFunc, error) {
	timeout := s.cfg.QueryTimeout
	if v := r.Form.Get("timeout"); v != "" {
		d, err := parseDuration(v)
		if err != nil {
			return nil, nil, fmt.Errorf("invalid parameter \"timeout\": %w", err)
		}
		if d <= 0 {
			return nil, nil, fmt.Errorf("invalid parameter \"timeout\": %q is not positive", v)
		}
		timeout = min(timeout, d)
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	return ctx, cancel, nil
}

func (s *Server) storeOr503(w http.ResponseWriter) bool {
	if s.src.Store == nil {
		writeError(w, errorUnavailable, errors.New("the store is not available"))
		return false
	}
	return true
}

// queryErrorType maps an evaluation error to its envelope type.
func queryErrorType(err error) errorType {
	var (
		canceled promql.ErrQueryCanceled
		timeout  promql.ErrQueryTimeout
		storErr  promql.ErrStorage
	)
	switch {
	case errors.As(err, &canceled), errors.Is(err, context.Canceled):
		return errorCanceled
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded):
		return errorTimeout
	case errors.As(err, &storErr):
		return errorInternal
	}
	return errorExec
}

func (s *Server) query(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) || !s.storeOr503(w) {
		return
	}
	ts, err := parseTimeParam(r.Form.Get("time"), "time", s.cfg.Clock.Now())
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	limit, err := parseLimit(r.Form.Get("limit"))
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	ctx, cancel, err := s.queryContext(r)
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	defer cancel()
	opts, err := queryOpts(r)
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	expr := r.Form.Get("query")
	if err := checkQueryLength(expr); err != nil {
		writeError(w, errorBadData, err)
		return
	}
	if err := checkSubqueries(expr, 0, s.cfg.MaxPointsPerSeries, s.cfg.MaxSubquerySteps); err != nil {
		writeError(w, errorBadData, err)
		return
	}
	st := s.src.Store
	qry, err := st.Engine().NewInstantQuery(ctx, st, opts, expr, ts)
	if err != nil {
		badQuery(ctx, w, err)
		return
	}
	s.execQuery(ctx, w, qry, expr, limit)
}

func (s *Server) queryRange(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) || !s.storeOr503(w) {
		return
	}
	start, err := parseTime(r.Form.Get("start"))
	if err != nil {
		writeError(w, errorBadData, fmt.Errorf("invalid parameter \"start\": %w", err))
		return
	}
	end, err := parseTime(r.Form.Get("end"))
	if err != nil {
		writeError(w, errorBadData, fmt.Errorf("invalid parameter \"end\": %w", err))
		return
	}
	if end.Before(start) {
		writeError(w, errorBadData, errors.New("invalid parameter \"end\": end timestamp must not be before start time"))
		return
	}
	step, err := parseDuration(r.Form.Get("step"))
	if err != nil {
		writeError(w, errorBadData, fmt.Errorf("invalid parameter \"step\": %w", err))
		return
	}
	if step <= 0 {
		writeError(w, errorBadData, errors.New("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"))
		return
	}
	// Sub saturates, so the checks hold for absurd ranges too.
	span := end.Sub(start)
	if span/step > time.Duration(s.cfg.MaxPointsPerSeries) {
		writeError(w, errorBadData, fmt.Errorf("exceeded maximum resolution of %d points per timeseries. Try decreasing the query resolution (?step=XX)", s.cfg.MaxPointsPerSeries))
		return
	}
	if span > s.cfg.MaxQueryRange {
		writeError(w, errorBadData, fmt.Errorf("query range %s exceeds the limit of %s", span, s.cfg.MaxQueryRange))
		return
	}
	limit, err := parseLimit(r.Form.Get("limit"))
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	ctx, cancel, err := s.queryContext(r)
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	defer cancel()
	opts, err := queryOpts(r)
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	expr := r.Form.Get("query")
	if err := checkQueryLength(expr); err != nil {
		writeError(w, errorBadData, err)
		return
	}
	if err := checkSubqueries(expr, span, s.cfg.MaxPointsPerSeries, s.cfg.MaxSubquerySteps); err != nil {
		writeError(w, errorBadData, err)
		return
	}
	st := s.src.Store
	qry, err := st.Engine().NewRangeQuery(ctx, st, opts, expr, start, end, step)
	if err != nil {
		badQuery(ctx, w, err)
		return
	}
	s.execQuery(ctx, w, qry, expr, limit)
}

// queryOpts reads the optional lookback_delta parameter.
func queryOpts(r *http.Request) (promql.QueryOpts, error) {
	v := r.Form.Get("lookback_delta")
	if v == "" {
		return nil, nil
	}
	d, err := parseDuration(v)
	if err != nil || d < 0 {
		return nil, fmt.Errorf("invalid parameter \"lookback_delta\": %q", v)
	}
	return promql.NewPrometheusQueryOpts(false, d, nil), nil
}

// badQuery reports a query that could not be prepared: a parse error is
// the caller's, a deadline that passed before evaluation is a timeout.
func badQuery(ctx context.Context, w http.ResponseWriter, err error) {
	if ctx.Err() != nil {
		writeError(w, queryErrorType(ctx.Err()), err)
		return
	}
	writeError(w, errorBadData, fmt.Errorf("invalid parameter \"query\": %w", err))
}

func (s *Server) execQuery(ctx context.Context, w http.ResponseWriter, qry promql.Query, expr string, limit int) {
	defer qry.Close()
	select {
	case s.querySlots <- struct{}{}:
		defer func() { <-s.querySlots }()
	case <-ctx.Done():
		writeError(w, queryErrorType(ctx.Err()), fmt.Errorf("waiting for one of %d query slots: %w", cap(s.querySlots), ctx.Err()))
		return
	}
	res := qry.Exec(ctx)
	if res.Err != nil {
		writeError(w, queryErrorType(res.Err), res.Err)
		return
	}
	value := res.Value
	truncated := false
	if limit > 0 {
		switch v := value.(type) {
		case promql.Vector:
			if len(v) > limit {
				value, truncated = v[:limit], true
			}
		case promql.Matrix:
			if len(v) > limit {
				value, truncated = v[:limit], true
			}
		}
	}
	warnings, infos := res.Warnings.AsStrings(expr, maxAnnotations, maxAnnotations)
	if truncated {
		warnings = append(warnings, "results truncated due to limit")
	}
	data, err := appendQueryData(make([]byte, 0, 4096), value)
	if err != nil {
		writeError(w, errorInternal, err)
		return
	}
	writeRawData(w, data, warnings, infos)
}

// seriesParams are the start, end, match[] and limit of the metadata
// endpoints (labels, label values, series).
type seriesParams struct {
	mint, maxt int64
	matchers   [][]*labels.Matcher
	limit      int
}

func (s *Server) parseSeriesParams(r *http.Request, needMatch bool) (seriesParams, error) {
	var p seriesParams
	start, err := parseTimeParam(r.Form.Get("start"), "start", minTime)
	if err != nil {
		return p, err
	}
	end, err := parseTimeParam(r.Form.Get("end"), "end", maxTime)
	if err != nil {
		return p, err
	}
	if end.Before(start) {
		return p, errors.New("invalid parameter \"end\": end timestamp must not be before start time")
	}
	p.mint, p.maxt = timestamp.FromTime(start), timestamp.FromTime(end)
	match := r.Form["match[]"]
	if len(match) > MaxMatchers {
		return p, fmt.Errorf("invalid parameter \"match[]\": %d selectors, at most %d", len(match), MaxMatchers)
	}
	for _, m := range match {
		if err := checkQueryLength(m); err != nil {
			return p, fmt.Errorf("invalid parameter \"match[]\": %w", err)
		}
	}
	if needMatch && len(match) == 0 {
		return p, errors.New("no match[] parameter provided")
	}
	if len(match) > 0 {
		p.matchers, err = s.src.Store.Parser().ParseMetricSelectors(match)
		if err != nil {
			return p, fmt.Errorf("invalid parameter \"match[]\": %w", err)
		}
		// A selector that matches the empty label set would select every
		// series: refused, as Prometheus does.
		for i, ms := range p.matchers {
			if !slices.ContainsFunc(ms, func(m *labels.Matcher) bool { return !m.Matches("") }) {
				return p, fmt.Errorf("invalid parameter \"match[]\": %q: match[] must contain at least one non-empty matcher", match[i])
			}
		}
	}
	p.limit, err = parseLimit(r.Form.Get("limit"))
	return p, err
}

// truncate applies limit to a sorted result, with Prometheus's warning.
func truncate[T any](items []T, limit int, warnings []string) ([]T, []string) {
	if limit > 0 && len(items) > limit {
		return items[:limit], append(warnings, "results truncated due to limit")
	}
	return items, warnings
}

func (s *Server) labelNames(w http.ResponseWriter, r *http.Request) {
	s.labelQuery(w, r, func(ctx context.Context, q storage.Querier, hints *storage.LabelHints, m ...*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelNames(ctx, hints, m...)
	})
}

func (s *Server) labelValues(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name == "" || !utf8.ValidString(name) {
		writeError(w, errorBadData, fmt.Errorf("invalid label name: %q", name))
		return
	}
	s.labelQuery(w, r, func(ctx context.Context, q storage.Querier, hints *storage.LabelHints, m ...*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelValues(ctx, name, hints, m...)
	})
}

type labelFunc func(ctx context.Context, q storage.Querier, hints *storage.LabelHints, m ...*labels.Matcher) ([]string, annotations.Annotations, error)

// labelQuery runs a label lookup once per match[] set and merges the
// sorted, de-duplicated union.
func (s *Server) labelQuery(w http.ResponseWriter, r *http.Request, lookup labelFunc) {
	if !parseForm(w, r) || !s.storeOr503(w) {
		return
	}
	p, err := s.parseSeriesParams(r, false)
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	q, err := s.src.Store.Querier(p.mint, p.maxt)
	if err != nil {
		writeError(w, errorExec, err)
		return
	}
	defer q.Close()
	hints := &storage.LabelHints{}
	if p.limit > 0 {
		hints.Limit = p.limit + 1 // one more, to know whether to warn
	}
	sets := p.matchers
	if len(sets) == 0 {
		sets = [][]*labels.Matcher{nil}
	}
	var (
		out   []string
		annos annotations.Annotations
	)
	for _, m := range sets {
		vals, a, err := lookup(r.Context(), q, hints, m...)
		if err != nil {
			writeError(w, queryErrorType(err), err)
			return
		}
		annos.Merge(a)
		out = append(out, vals...)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if out == nil {
		out = []string{}
	}
	warnings, infos := annos.AsStrings("", maxAnnotations, maxAnnotations)
	out, warnings = truncate(out, p.limit, warnings)
	writeData(w, out, warnings, infos)
}

func (s *Server) series(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) || !s.storeOr503(w) {
		return
	}
	p, err := s.parseSeriesParams(r, true)
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	q, err := s.src.Store.Querier(p.mint, p.maxt)
	if err != nil {
		writeError(w, errorExec, err)
		return
	}
	defer q.Close()
	hints := &storage.SelectHints{Start: p.mint, End: p.maxt, Func: "series"}
	if p.limit > 0 {
		hints.Limit = p.limit + 1
	}
	seen := map[string]bool{}
	var (
		out   []labels.Labels
		annos annotations.Annotations
	)
	for _, m := range p.matchers {
		set := q.Select(r.Context(), false, hints, m...)
		for set.Next() {
			ls := set.At().Labels()
			key := ls.String()
			if !seen[key] {
				seen[key] = true
				out = append(out, ls)
			}
		}
		if err := set.Err(); err != nil {
			writeError(w, queryErrorType(err), err)
			return
		}
		annos.Merge(set.Warnings())
	}
	slices.SortFunc(out, labels.Compare)
	warnings, infos := annos.AsStrings("", maxAnnotations, maxAnnotations)
	out, warnings = truncate(out, p.limit, warnings)
	b := make([]byte, 0, 256*len(out)+2)
	b = append(b, '[')
	for i, ls := range out {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendLabels(b, ls)
	}
	b = append(b, ']')
	writeRawData(w, b, warnings, infos)
}

// queryExemplars answers with no exemplars: meshlens stores none, and
// Grafana asks.
func (s *Server) queryExemplars(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) {
		return
	}
	if _, err := exprParser.ParseExpr(r.Form.Get("query")); err != nil {
		writeError(w, errorBadData, fmt.Errorf("invalid parameter \"query\": %w", err))
		return
	}
	writeRawData(w, []byte("[]"), nil, nil)
}

// formatQuery pretty-prints an expression (Grafana's "format query").
func (s *Server) formatQuery(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) {
		return
	}
	expr, err := exprParser.ParseExpr(r.Form.Get("query"))
	if err != nil {
		writeError(w, errorBadData, fmt.Errorf("invalid parameter \"query\": %w", err))
		return
	}
	writeData(w, expr.Pretty(0), nil, nil)
}

func (s *Server) buildInfo(w http.ResponseWriter, _ *http.Request) {
	version := s.cfg.Version
	if version == "" {
		version = "dev"
	}
	writeData(w, map[string]string{
		"version":   version,
		"revision":  "",
		"branch":    "",
		"buildUser": "",
		"buildDate": "",
		"goVersion": runtime.Version(),
	}, nil, nil)
}

func (s *Server) runtimeInfo(w http.ResponseWriter, _ *http.Request) {
	cwd, _ := os.Getwd()
	writeData(w, map[string]any{
		"startTime":           startTime.UTC(),
		"CWD":                 cwd,
		"reloadConfigSuccess": true,
		"lastConfigTime":      startTime.UTC(),
		"corruptionCount":     0,
		"goroutineCount":      runtime.NumGoroutine(),
		"GOMAXPROCS":          runtime.GOMAXPROCS(0),
		"GOMEMLIMIT":          int64(-1),
		"GOGC":                os.Getenv("GOGC"),
		"GODEBUG":             os.Getenv("GODEBUG"),
		"storageRetention":    "",
	}, nil, nil)
}

func (s *Server) flags(w http.ResponseWriter, _ *http.Request) {
	writeData(w, map[string]string{}, nil, nil)
}

// Limits on what one query may ask for. The body limit alone would let a
// caller make the engine parse and plan megabytes of selectors; these keep
// each request to what a person or a dashboard writes.
const (
	MaxQueryLength = 16 << 10
	MaxMatchers    = 256
)

func checkQueryLength(expr string) error {
	if len(expr) > MaxQueryLength {
		return fmt.Errorf("query of %d bytes, at most %d", len(expr), MaxQueryLength)
	}
	return nil
}

// noStepSubquery is the step of a subquery written without one ([1h:]):
// store's NoStepSubqueryIntervalFn, Prometheus's default evaluation
// interval.
const noStepSubquery = time.Minute

// checkSubqueries bounds what the subqueries of expr make the engine
// evaluate, before it does. A subquery evaluates its inner expression at
// every step of its range, over the whole span of the outer query (and of
// any subquery around it), whatever data exists: count_over_time(
// vector(1)[10y:1s]) is 315 M steps from a 40-byte query, and took the
// server to 7.3 GB before max-samples stopped it (a range's cap never saw
// it). So, per subquery, range/step is at most maxPoints, as a range
// query's points are, and the steps over the whole span at most maxSteps.
// span is the outer query's end minus start (0 for an instant query).
func checkSubqueries(expr string, span time.Duration, maxPoints, maxSteps int) error {
	e, err := exprParser.ParseExpr(expr)
	if err != nil {
		return nil // the engine reports it, as Prometheus words it
	}
	var bad error
	parser.Inspect(e, func(node parser.Node, path []parser.Node) error {
		sq, ok := node.(*parser.SubqueryExpr)
		if !ok || bad != nil {
			return nil
		}
		step := sq.Step
		if step <= 0 {
			step = noStepSubquery
		}
		// The span this subquery's inner expression covers: the outer
		// query's, plus every enclosing subquery's range and its own.
		total := span + sq.Range
		for _, n := range path {
			if outer, ok := n.(*parser.SubqueryExpr); ok {
				total += outer.Range
			}
		}
		switch {
		case sq.Range/step > time.Duration(maxPoints):
			bad = fmt.Errorf("subquery %s: %d steps, at most %d: use a coarser step ([range:step])", sq.String(), sq.Range/step, maxPoints)
		case total/step > time.Duration(maxSteps):
			bad = fmt.Errorf("subquery %s: %d steps over the query's span, at most %d: use a coarser step or a shorter range", sq.String(), total/step, maxSteps)
		}
		return nil
	})
	return bad
}
