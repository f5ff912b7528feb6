package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/meshlens/meshlens/internal/wire"
)

// meshlens's own JSON endpoints, in the same envelope as the Prometheus API
// so that one client handles both.

// DefaultPairWindow is how far back /api/v1/pairs looks without ?since.
const DefaultPairWindow = time.Hour

// validName accepts fabric element names and protocol names: the topology
// generator's alphabet, bounded, so that nothing odd reaches a source.
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// protocols serves wire's protocol table, so the UI lists the protocols
// the server knows instead of a copy of their names.
func (s *Server) protocols(w http.ResponseWriter, _ *http.Request) {
	writeData(w, wire.Protocols(), nil, nil)
}

func (s *Server) topology(w http.ResponseWriter, _ *http.Request) {
	if s.src.Topology == nil {
		writeError(w, errorUnavailable, errors.New("the topology is not available"))
		return
	}
	t := s.src.Topology()
	if t == nil {
		writeError(w, errorUnavailable, errors.New("no topology loaded yet"))
		return
	}
	writeData(w, t, nil, nil)
}

func (s *Server) pinglist(w http.ResponseWriter, r *http.Request) {
	host := r.PathValue("host")
	if !validName(host) {
		writeError(w, errorBadData, fmt.Errorf("invalid host name %q", host))
		return
	}
	if s.src.Pinglists == nil {
		writeError(w, errorUnavailable, errors.New("pinglists are not available"))
		return
	}
	pl, ok := s.src.Pinglists.Pinglist(host)
	if !ok {
		writeError(w, errorNotFound, fmt.Errorf("no pinglist for host %q", host))
		return
	}
	writeData(w, pl, nil, nil)
}

func (s *Server) agents(w http.ResponseWriter, _ *http.Request) {
	if s.src.Agents == nil {
		writeError(w, errorUnavailable, errors.New("agent status is not available"))
		return
	}
	list := s.src.Agents.Agents()
	if list == nil {
		list = []AgentStatus{}
	}
	writeData(w, list, nil, nil)
}

// suspects answers GET /api/v1/suspects[?at=RFC3339].
func (s *Server) suspects(w http.ResponseWriter, r *http.Request) {
	var at time.Time
	if v := r.URL.Query().Get("at"); v != "" {
		var err error
		if at, err = time.Parse(time.RFC3339, v); err != nil {
			writeError(w, errorBadData, fmt.Errorf("at: want an RFC3339 time: %w", err))
			return
		}
	}
	if s.src.Suspects == nil {
		writeError(w, errorUnavailable, errors.New("suspects are not available"))
		return
	}
	writeData(w, s.src.Suspects.SuspectsAt(at), nil, nil)
}

// evidence answers GET /api/v1/evidence: the elements evidence is being
// gathered on, the peers each agent probes harder, the extra probes/s.
func (s *Server) evidence(w http.ResponseWriter, _ *http.Request) {
	if s.src.Evidence == nil {
		writeError(w, errorUnavailable, errors.New("evidence on demand is not available"))
		return
	}
	writeData(w, s.src.Evidence.EvidencePlan(), nil, nil)
}

func (s *Server) pairs(w http.ResponseWriter, r *http.Request) {
	q, err := s.parsePairQuery(r)
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	if s.src.Pairs == nil {
		writeError(w, errorUnavailable, errors.New("pair windows are not available"))
		return
	}
	var windows []PairWindow
	if q.SrcRack != "" {
		rp, ok := s.src.Pairs.(RackPairSource)
		if !ok {
			writeError(w, errorUnavailable, errors.New("rack-pair queries are not available"))
			return
		}
		windows, err = rp.RackPairWindows(r.Context(), q)
	} else {
		windows, err = s.src.Pairs.PairWindows(r.Context(), q)
	}
	if err != nil {
		writeError(w, errorExec, fmt.Errorf("pair windows %s->%s: %w", q.Src, q.Dst, err))
		return
	}
	if windows == nil {
		windows = []PairWindow{}
	}
	ds, ok := s.src.Pairs.(PairDetailSource)
	if !ok {
		writeData(w, windows, nil, nil)
		return
	}
	data, err := json.Marshal(windows)
	if err != nil {
		writeError(w, errorInternal, err)
		return
	}
	detail, err := json.Marshal(ds.PairDetail(r.Context(), q))
	if err != nil {
		writeError(w, errorInternal, err)
		return
	}
	writeRawData(w, data, nil, nil, envelopeField{"pair_detail", detail})
}

func (s *Server) parsePairQuery(r *http.Request) (PairQuery, error) {
	v := r.URL.Query()
	q := PairQuery{Src: v.Get("src"), Dst: v.Get("dst"), Proto: v.Get("proto"), SrcRack: v.Get("src_rack"), DstRack: v.Get("dst_rack")}
	names := map[string]string{"src": q.Src, "dst": q.Dst}
	if q.SrcRack != "" || q.DstRack != "" {
		// A rack pair: every host pair of it, in the minute up to at.
		if q.Src != "" || q.Dst != "" {
			return q, errors.New("give src and dst, or src_rack and dst_rack, not both")
		}
		names = map[string]string{"src_rack": q.SrcRack, "dst_rack": q.DstRack}
		at, err := parseTimeParam(v.Get("at"), "at", s.cfg.Clock.Now())
		if err != nil {
			return q, err
		}
		q.Since, q.Until = at.Add(-time.Minute), at
	}
	for name, val := range names {
		if !validName(val) {
			return q, fmt.Errorf("invalid parameter %q: %q is not a host name", name, val)
		}
	}
	if q.Proto != "" {
		if _, err := wire.ParseProtocol(q.Proto); err != nil {
			return q, fmt.Errorf("invalid parameter \"proto\": %w", err)
		}
	}
	if q.SrcRack != "" {
		return q, nil
	}
	var err error
	if q.Until, err = parseTimeParam(v.Get("until"), "until", s.cfg.Clock.Now()); err != nil {
		return q, err
	}
	if q.Since, err = parseTimeParam(v.Get("since"), "since", q.Until.Add(-DefaultPairWindow)); err != nil {
		return q, err
	}
	if q.Until.Before(q.Since) {
		return q, errors.New("invalid parameter \"until\": before since")
	}
	if span := q.Until.Sub(q.Since); span > s.cfg.MaxQueryRange {
		return q, fmt.Errorf("range %s exceeds the limit of %s", span, s.cfg.MaxQueryRange)
	}
	return q, nil
}

func (s *Server) auditEntries(w http.ResponseWriter, r *http.Request) {
	limit, err := parseLimit(r.URL.Query().Get("limit"))
	if err != nil {
		writeError(w, errorBadData, err)
		return
	}
	writeData(w, s.audit.entries(limit), nil, nil)
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.src.Ready != nil {
		if err := s.src.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "not ready: "+err.Error()+"\n")
			return
		}
	}
	_, _ = io.WriteString(w, "ready\n")
}
