package api

import (
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	panics   *prometheus.CounterVec
	denied   *prometheus.CounterVec
	bad      *prometheus.CounterVec
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_http_requests_total",
			Help: "HTTP requests served by the API, by route pattern and status code.",
		}, []string{"handler", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meshlens_http_request_duration_seconds",
			Help:    "Time to serve an API request, by route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"handler"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_http_panics_total",
			Help: "Handler panics recovered by the API, by route pattern.",
		}, []string{"handler"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_http_auth_denied_total",
			Help: "Requests refused by auth, by reason: missing_token, bad_token, forbidden.",
		}, []string{"reason"}),
		bad: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_http_bad_requests_total",
			Help: "Requests refused for bad input (parameters, PromQL, ranges, body size), by route pattern.",
		}, []string{"handler"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.panics, m.denied, m.bad} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("api: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// statusRecorder remembers the status code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status  int
	written bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.written {
		r.status, r.written = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if !r.written {
		r.status, r.written = http.StatusOK, true
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// harden wraps the whole mux: security headers and a body limit for every
// response, matched or not.
func (s *Server) harden(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// instrument counts, times and recovers a route, then authenticates and
// authorizes it and, for mutating calls, audits it.
func (s *Server) instrument(pattern string, role Role, mutating bool, next http.Handler) http.Handler {
	return s.instrumentPublic(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		p, err := s.auth.authenticate(r)
		if errors.Is(err, errNoToken) && role == RoleNone {
			p, err = Principal{Name: "anonymous", Role: RoleNone}, nil // a public route
		}
		rec := w.(*statusRecorder)
		if mutating && r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions {
			defer func() {
				who, status := p.Name, rec.status
				if who == "" {
					who = "unauthenticated"
				}
				v := recover()
				if v != nil {
					status = http.StatusInternalServerError // what the recovery below will answer
				}
				s.audit.record(AuditEntry{
					Time: start.UTC(), Principal: who, Role: p.Role.String(),
					Method: r.Method, Path: r.URL.Path, Status: status, Remote: r.RemoteAddr,
					Seconds: time.Since(start).Seconds(),
				})
				if v != nil {
					panic(v)
				}
			}()
		}
		switch {
		case errors.Is(err, errNoToken):
			s.metrics.denied.WithLabelValues("missing_token").Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="meshlens"`)
			writeError(w, errorUnauthorized, err)
			return
		case err != nil:
			s.metrics.denied.WithLabelValues("bad_token").Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="meshlens", error="invalid_token"`)
			writeError(w, errorUnauthorized, err)
			return
		case p.Role < role:
			s.metrics.denied.WithLabelValues("forbidden").Inc()
			// The route's pattern already names its method ("PUT /api/...").
			writeError(w, errorForbidden, fmt.Errorf("%s needs role %s; %q has %s", pattern, role, p.Name, p.Role))
			return
		}
		next.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), p)))
	}))
}

// instrumentPublic counts, times and recovers a route without auth.
func (s *Server) instrumentPublic(pattern string, next http.Handler) http.Handler {
	dur := s.metrics.duration.WithLabelValues(pattern)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler { //nolint:errorlint // sentinel compared as net/http does
					panic(v)
				}
				s.metrics.panics.WithLabelValues(pattern).Inc()
				s.cfg.Logger.Error("api: handler panic", "handler", pattern, "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if !rec.written {
					writeError(rec, errorInternal, errors.New("internal error"))
				}
				rec.status = http.StatusInternalServerError
			}
			s.metrics.requests.WithLabelValues(pattern, strconv.Itoa(rec.status)).Inc()
			if rec.status == http.StatusBadRequest || rec.status == http.StatusRequestEntityTooLarge {
				s.metrics.bad.WithLabelValues(pattern).Inc()
			}
			dur.Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(rec, r)
	})
}
