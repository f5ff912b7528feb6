package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
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

// selfURL is where this process reaches its own API.
func (s *Server) selfURL() string {
	host, port, err := net.SplitHostPort(s.cfg.HTTPAddr)
	if err != nil {
		return "http://" + s.cfg.HTTPAddr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme := "http"
	if s.cfg.HTTPTLS.Enabled() {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

func (s *Server) selfClient() *http.Client {
	c := &http.Client{Timeout: 30 * time.Second}
	if s.cfg.HTTPTLS.Enabled() {
		// Talking to itself: the certificate may not name the loopback
		// address it is reached on here.
		c.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // own process
	}
	return c
}
