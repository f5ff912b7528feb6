package api

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// AuditEntry records one mutating call. It never holds a token.
type AuditEntry struct {
	Time      time.Time `json:"time"`
	Principal string    `json:"principal"`
	Role      string    `json:"role"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Status    int       `json:"status"`
	Remote    string    `json:"remote"`
	Seconds   float64   `json:"duration_seconds"`
}

// auditLog keeps the newest entries in memory (served to admins) and writes
// every entry as a JSON line to an optional writer.
type auditLog struct {
	mu     sync.Mutex
	ring   []AuditEntry
	next   int
	full   bool
	logger *slog.Logger // nil: ring only
}

func newAuditLog(size int, w io.Writer) *auditLog {
	a := &auditLog{ring: make([]AuditEntry, size)}
	if w != nil {
		a.logger = slog.New(slog.NewJSONHandler(w, nil))
	}
	return a
}

func (a *auditLog) record(e AuditEntry) {
	a.mu.Lock()
	a.ring[a.next] = e
	a.next = (a.next + 1) % len(a.ring)
	if a.next == 0 {
		a.full = true
	}
	a.mu.Unlock()
	if a.logger != nil {
		a.logger.LogAttrs(context.Background(), slog.LevelInfo, "audit",
			slog.String("principal", e.Principal), slog.String("role", e.Role),
			slog.String("method", e.Method), slog.String("path", e.Path),
			slog.Int("status", e.Status), slog.String("remote", e.Remote),
			slog.Float64("duration_seconds", e.Seconds))
	}
}

// entries returns up to limit newest entries, oldest first; limit 0: all.
func (a *auditLog) entries(limit int) []AuditEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []AuditEntry
	if a.full {
		out = append(out, a.ring[a.next:]...)
	}
	out = append(out, a.ring[:a.next]...)
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	if out == nil {
		out = []AuditEntry{}
	}
	return out
}
