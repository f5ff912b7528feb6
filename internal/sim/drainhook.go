package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"

	"github.com/meshlens/meshlens/internal/alert"
	"github.com/meshlens/meshlens/internal/localize"
	"github.com/meshlens/meshlens/internal/topology"
)

// DrainHook stands in for a network controller in front of a live
// simulated fabric: it receives meshlens's remediation webhooks
// ({"action": "drain"|"undrain", "element", "kind"}, signed under
// alert.SignatureHeader when a secret is set) and keeps the set of drained
// elements that RunLive's fabric routes around from its next round. With
// it, a live demo or an end-to-end test closes the loop: fault, SLO burn,
// incident, automatic drain, burn over.
type DrainHook struct {
	x      *localize.Index
	secret []byte

	mu      sync.Mutex
	drained map[string]bool
	version uint64 // bumped at every change
}

// NewDrainHook accepts drains of x's switches and switch-to-switch links;
// with a secret, only requests signed with it.
func NewDrainHook(x *localize.Index, secret []byte) *DrainHook {
	return &DrainHook{x: x, secret: secret, drained: map[string]bool{}}
}

// maxDrainBody bounds a request: the webhook's JSON is a few dozen bytes.
const maxDrainBody = 64 << 10

// drainRequest is the body of a remediation webhook (alert.WebhookAction).
type drainRequest struct {
	Action  string `json:"action"`
	Element string `json:"element"`
	Kind    string `json:"kind"`
}

func (h *DrainHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST a remediation action", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDrainBody))
	if err != nil {
		http.Error(w, "request body: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	if len(h.secret) > 0 && !alert.VerifySignature(h.secret, body, r.Header.Get(alert.SignatureHeader)) {
		http.Error(w, "missing or bad "+alert.SignatureHeader, http.StatusUnauthorized)
		return
	}
	var req drainRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, `request body: want {"action": "drain"|"undrain", "element": NAME, "kind": KIND}: `+err.Error(), http.StatusBadRequest)
		return
	}
	drained, err := h.apply(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"drained": drained})
}

func (h *DrainHook) apply(req drainRequest) ([]string, error) {
	name, err := drainableName(h.x, req.Element)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch req.Action {
	case alert.ActionDrain:
		if !h.drained[name] {
			h.drained[name] = true
			h.version++
		}
	case alert.ActionUndrain:
		if h.drained[name] {
			delete(h.drained, name)
			h.version++
		}
	default:
		return nil, fmt.Errorf("action %q: want %s or %s", req.Action, alert.ActionDrain, alert.ActionUndrain)
	}
	return h.listLocked(), nil
}

// Drained returns the drained elements, sorted, and the set's version,
// which changes whenever the set does.
func (h *DrainHook) Drained() ([]string, uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.listLocked(), h.version
}

func (h *DrainHook) listLocked() []string {
	out := make([]string, 0, len(h.drained))
	for n := range h.drained {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// drainableName checks that name is a switch or a link between two
// switches of x and returns its canonical form (links as "A--B").
func drainableName(x *localize.Index, name string) (string, error) {
	if n, ok := x.Node(name); ok {
		if !x.IsSwitch(n) {
			return "", fmt.Errorf("drain %q: a host cannot be drained, it has no other path", name)
		}
		return name, nil
	}
	a, b, _, err := topology.ParseLinkName(name)
	if err != nil {
		return "", fmt.Errorf("drain %q: neither a switch nor a link: %w", name, err)
	}
	na, okA := x.Node(a)
	nb, okB := x.Node(b)
	if !okA || !okB {
		return "", fmt.Errorf("drain %q: unknown element", name)
	}
	l, ok := x.Link(na, nb)
	if !ok {
		return "", fmt.Errorf("drain %q: no such link", name)
	}
	if !x.IsSwitch(na) || !x.IsSwitch(nb) {
		return "", fmt.Errorf("drain %q: a host access link cannot be drained, the host has no other path", name)
	}
	return x.PhysicalName(l), nil
}
