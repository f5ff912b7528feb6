package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/meshlens/meshlens/internal/alert"
	"github.com/meshlens/meshlens/internal/api"
	"github.com/meshlens/meshlens/internal/slo"
	"github.com/meshlens/meshlens/internal/topology"
	"github.com/meshlens/meshlens/internal/yamlfile"
)

// The routes that change things: operators acknowledge incidents, admins
// replace the topology and the SLOs. Each is behind its role and, like
// every state-changing request, written to the audit log by the API layer.
func (s *Server) registerChanges(srv *api.Server) {
	srv.Handle("POST /api/v1/incidents/{id}/ack", api.RoleOperator, http.HandlerFunc(s.ackIncident))
	srv.Handle("GET /api/v1/config/topology", api.RoleViewer, http.HandlerFunc(s.getTopologyFile))
	srv.Handle("PUT /api/v1/config/topology", api.RoleAdmin, http.HandlerFunc(s.putTopologyFile))
	srv.Handle("GET /api/v1/config/slos", api.RoleViewer, http.HandlerFunc(s.getSLOFile))
	srv.Handle("PUT /api/v1/config/slos", api.RoleAdmin, http.HandlerFunc(s.putSLOFile))
	srv.Handle("GET /api/v1/config/remediation", api.RoleViewer, http.HandlerFunc(s.getRemediation))
	srv.Handle("PUT /api/v1/config/remediation", api.RoleAdmin, http.HandlerFunc(s.putRemediation))
}

// remediationPolicy is the remediation policy in force, as the API shows
// it (actions by kind and target, never their secrets).
type remediationPolicy struct {
	Source            string            `json:"source"` // none, alerting file, api
	Execute           bool              `json:"execute"`
	MaxActionsPerHour int               `json:"max_actions_per_hour"`
	MaxLayerShare     float64           `json:"max_layer_share"`
	MaxEvidenceAge    string            `json:"max_evidence_age"`
	Rules             []remediationRule `json:"rules"`
}

type remediationRule struct {
	Name          string   `json:"name"`
	Kinds         []string `json:"kinds"`
	MinConfidence float64  `json:"min_confidence"`
	HoldDown      string   `json:"hold_down"`
	Action        string   `json:"action"`
}

func (s *Server) remediationPolicy() remediationPolicy {
	p := s.alerting.rem.Policy()
	out := remediationPolicy{Source: s.alerting.remSource, Execute: p.Execute, MaxActionsPerHour: p.MaxActionsPerHour,
		MaxLayerShare: p.MaxLayerShare, MaxEvidenceAge: p.MaxEvidenceAge.String(), Rules: []remediationRule{}}
	for _, r := range p.Rules {
		out.Rules = append(out.Rules, remediationRule{Name: r.Name, Kinds: r.Kinds, MinConfidence: r.MinConfidence,
			HoldDown: r.HoldDown.String(), Action: fmt.Sprint(r.Action)})
	}
	return out
}

func (s *Server) getRemediation(w http.ResponseWriter, _ *http.Request) {
	s.remMu.Lock()
	defer s.remMu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": s.remediationPolicy()})
}

// putRemediation replaces the remediation policy: the body is the
// remediation section of an alerting file (execute, caps, rules), with
// webhook actions only — commands and secret files live on the server's
// host, not behind an API token. It is in force from the next SLO
// evaluation and kept in the data dir across restarts.
func (s *Server) putRemediation(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		writeBodyError(w, err, "a remediation policy (YAML)")
		return
	}
	p, err := alert.ParseRemediation("request body", data, os.Getenv)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_data", err)
		return
	}
	if p.MaxEvidenceAge == 0 {
		p.MaxEvidenceAge = s.alerting.defaultEvidenceAge
	}
	s.remMu.Lock()
	defer s.remMu.Unlock()
	if err := writeFileAtomic(filepath.Join(s.cfg.DataDir, RemediationPolicyFile), data); err != nil {
		writeAPIError(w, http.StatusInternalServerError, "internal", err)
		return
	}
	if err := s.alerting.rem.SetPolicy(p); err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_data", err)
		return
	}
	s.alerting.remSource = "api"
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": s.remediationPolicy()})
}

// ackRequest is the body of POST /api/v1/incidents/{id}/ack (optional).
type ackRequest struct {
	Comment string `json:"comment"`
}

func (s *Server) ackIncident(w http.ResponseWriter, r *http.Request) {
	var req ackRequest
	if err := decodeOptionalJSON(r, &req); err != nil {
		writeBodyError(w, err, `want JSON {"comment": "..."} or no body`)
		return
	}
	p, _ := api.PrincipalFrom(r.Context())
	inc, err := s.alerting.mgr.Acknowledge(r.PathValue("id"), p.Name, req.Comment, time.Now())
	switch {
	case errors.Is(err, alert.ErrNoIncident):
		writeAPIError(w, http.StatusNotFound, "not_found", err)
	case errors.Is(err, alert.ErrAlreadyAcked), errors.Is(err, alert.ErrIncidentResolved):
		writeAPIError(w, http.StatusConflict, "conflict", err)
	case err != nil:
		writeAPIError(w, http.StatusBadRequest, "bad_data", err)
	default:
		writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": inc})
	}
}

func (s *Server) getTopologyFile(w http.ResponseWriter, _ *http.Request) {
	s.topoMu.Lock()
	data, err := yamlfile.ReadFile(s.cfg.TopologyFile, topology.MaxFileBytes)
	s.topoMu.Unlock()
	if err != nil {
		writeAPIError(w, http.StatusInternalServerError, "internal", fmt.Errorf("read the topology file: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(data)
}

// putTopologyFile replaces the topology: the body is a topology file,
// validated as strictly as at start; once it is written (atomically) to
// --topology and its pinglists are published, it is in force, and the
// answer says so. An invalid body changes nothing.
func (s *Server) putTopologyFile(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		writeBodyError(w, err, "a topology file (YAML)")
		return
	}
	topo, err := topology.Parse("request body", data)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_data", err)
		return
	}
	s.topoMu.Lock()
	defer s.topoMu.Unlock()
	if err := writeFileAtomic(s.cfg.TopologyFile, data); err != nil {
		// A ConfigMap or other read-only mount: its source is the truth,
		// and the server follows the file when that changes.
		if errors.Is(err, syscall.EROFS) || errors.Is(err, fs.ErrPermission) {
			writeAPIError(w, http.StatusConflict, "unavailable", fmt.Errorf("the topology file is read-only to the server (a ConfigMap or read-only mount?): change it where it comes from, the server follows it: %w", err))
			return
		}
		writeAPIError(w, http.StatusInternalServerError, "internal", err)
		return
	}
	if st, err := os.Stat(s.cfg.TopologyFile); err == nil {
		s.topoMod = st.ModTime() // the watcher need not apply it again
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := s.applyTopologyLocked(ctx, topo); err != nil {
		writeAPIError(w, http.StatusServiceUnavailable, "unavailable",
			fmt.Errorf("topology written to %s, but its pinglists were not published (the server retries when the file changes again): %w", s.cfg.TopologyFile, err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": map[string]any{
		"hosts": len(topo.Hosts), "pinglist_version": s.controller.Version(),
	}})
}

// sloFile is the one SLO file the admin API edits.
func (s *Server) sloFile() (string, error) {
	switch files := s.cfg.Alerting.SLOFiles; {
	case s.alerting.engine == nil:
		return "", errors.New("the server runs without SLOs: start it with --slo FILE to manage them here")
	case len(files) != 1:
		return "", fmt.Errorf("the server reads %d SLO files; edit them on disk and restart it", len(files))
	default:
		return files[0], nil
	}
}

func (s *Server) getSLOFile(w http.ResponseWriter, _ *http.Request) {
	file, err := s.sloFile()
	if err != nil {
		writeAPIError(w, http.StatusConflict, "conflict", err)
		return
	}
	s.sloMu.Lock()
	data, err := yamlfile.ReadFile(file, yamlfile.MaxConfigBytes)
	s.sloMu.Unlock()
	if err != nil {
		writeAPIError(w, http.StatusInternalServerError, "internal", fmt.Errorf("read the SLO file: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(data)
}

// putSLOFile replaces the SLOs: the body is an SLO file (meshlens YAML or
// OpenSLO), validated as `meshlens slo lint` does; it is written to the
// --slo file and evaluated from the next evaluation on. Alerts of SLOs it
// drops resolve at that evaluation.
func (s *Server) putSLOFile(w http.ResponseWriter, r *http.Request) {
	file, err := s.sloFile()
	if err != nil {
		writeAPIError(w, http.StatusConflict, "conflict", err)
		return
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		writeBodyError(w, err, "an SLO file (YAML)")
		return
	}
	slos, err := slo.Parse(slo.File{Name: "request body", Data: data})
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_data", err)
		return
	}
	s.sloMu.Lock()
	defer s.sloMu.Unlock()
	if err := s.alerting.engine.SetSLOs(slos); err != nil {
		writeAPIError(w, http.StatusBadRequest, "bad_data", err)
		return
	}
	if err := writeFileAtomic(file, data); err != nil {
		writeAPIError(w, http.StatusInternalServerError, "internal",
			fmt.Errorf("SLOs in force until restart, but not saved: %w", err))
		return
	}
	names := make([]string, 0, len(slos))
	for _, o := range slos {
		names = append(names, o.Name)
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": map[string]any{"slos": names}})
}

// decodeOptionalJSON reads a JSON body into v, strictly (unknown fields are
// errors); an empty body leaves v as it is.
func decodeOptionalJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}

// writeBodyError answers a request body that could not be read or parsed:
// 413 when it is over the API's size limit, else 400 saying what was
// expected.
func writeBodyError(w http.ResponseWriter, err error, want string) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeAPIError(w, http.StatusRequestEntityTooLarge, "bad_data", fmt.Errorf("request body over %d bytes", tooLarge.Limit))
		return
	}
	writeAPIError(w, http.StatusBadRequest, "bad_data", fmt.Errorf("request body: %v; %s", err, want))
}

func writeAPIError(w http.ResponseWriter, code int, typ string, err error) {
	writeJSON(w, code, map[string]any{"status": "error", "errorType": typ, "error": err.Error()})
}

// writeFileAtomic replaces path with data: a reader (or a crash) sees the
// old file or the new one, never half of it.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	mode := os.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	if _, err = tmp.Write(data); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), mode)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename itself, durable
		d.Close()
	}
	return nil
}
