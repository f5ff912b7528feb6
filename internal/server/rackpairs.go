package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/meshlens/meshlens/internal/api"
	"github.com/meshlens/meshlens/internal/diagnose"
)

// RackPairWindows answers the host level of the heatmap: every host pair
// of a rack pair, in the query's span.
func (p pairSource) RackPairWindows(ctx context.Context, q api.PairQuery) ([]api.PairWindow, error) {
	topo := p.s.Topology()
	src, dst := topo.Rack(q.SrcRack), topo.Rack(q.DstRack)
	if src == nil || dst == nil {
		return nil, fmt.Errorf("no rack %q or %q in the topology", q.SrcRack, q.DstRack)
	}
	out := []api.PairWindow{}
	for _, a := range src.Hosts {
		for _, b := range dst.Hosts {
			if a == b {
				continue
			}
			one := q
			one.Src, one.Dst = a, b
			ws, err := p.PairWindows(ctx, one)
			if err != nil {
				return nil, err
			}
			for i := range ws {
				ws[i].Src, ws[i].Dst = a, b
			}
			out = append(out, ws...)
		}
	}
	return out, nil
}

// serveDiagnosePair runs the `meshlens diagnose pair` troubleshooter for
// the UI, against this server's own API with the caller's credentials, so
// it sees exactly what the caller may see.
func (s *Server) serveDiagnosePair(w http.ResponseWriter, r *http.Request) {
	src, dst := r.URL.Query().Get("src"), r.URL.Query().Get("dst")
	since := time.Hour
	if v := r.URL.Query().Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > 24*time.Hour {
			writeJSON(w, http.StatusBadRequest, map[string]string{"status": "error", "errorType": "bad_data", "error": "since: want a duration up to 24h"})
			return
		}
		since = d
	}
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	c, err := diagnose.NewClient(s.selfURL(), token, s.selfClient())
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"status": "error", "errorType": "internal", "error": err.Error()})
		return
	}
	rep, err := diagnose.Pair(r.Context(), c, src, dst, since, time.Now())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"status": "error", "errorType": "bad_data", "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": rep})
}

// selfURL is the base URL of the server's calls to its own API; they
// never leave the process (see selfClient).
func (s *Server) selfURL() string { return "http://meshlens.internal" }

// selfClient serves the server's calls to its own API in process, through
// the same handlers (the caller's token is checked as on any request): no
// socket, and no TLS, so no certificate of its own to present when the
// API requires client certificates (--tls-client-ca).
func (s *Server) selfClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: inProcess{s.api}}
}

// inProcess is an http.RoundTripper that hands requests to a handler.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.RemoteAddr = "127.0.0.1:0" // the server itself
	req.RequestURI = req.URL.RequestURI()
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}
