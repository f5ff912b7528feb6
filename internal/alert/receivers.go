package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Alertmanager delivers to a Prometheus Alertmanager through its v2 API
// (POST /api/v2/alerts). Firing alerts are re-sent every round with endsAt
// a few resend intervals ahead, so they lapse if meshlens goes quiet;
// resolved alerts are sent with endsAt = their resolve time.
type Alertmanager struct {
	name         string
	url          string // .../api/v2/alerts
	client       *http.Client
	generatorURL string
}

// NewAlertmanager returns a receiver for the Alertmanager at base (e.g.
// http://127.0.0.1:9093). generatorURL is put on every alert.
func NewAlertmanager(name, base, generatorURL string, client *http.Client) (*Alertmanager, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("alert: alertmanager %q: bad URL %q: want http(s)://host:port", name, base)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Alertmanager{name: name, url: strings.TrimRight(base, "/") + "/api/v2/alerts", client: client, generatorURL: generatorURL}, nil
}

// Name of the receiver.
func (am *Alertmanager) Name() string { return am.name }

// Repeat: Alertmanager needs firing alerts re-sent to keep them active.
func (am *Alertmanager) Repeat() bool { return true }

// postableAlert is Alertmanager's v2 PostableAlert.
type postableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Send posts the notification's alerts.
func (am *Alertmanager) Send(ctx context.Context, n Notification) error {
	out := make([]postableAlert, 0, len(n.Alerts))
	for _, a := range n.Alerts {
		p := postableAlert{Labels: a.Labels, Annotations: maps.Clone(a.Annotations), StartsAt: a.ActiveAt, GeneratorURL: a.GeneratorURL}
		if am.generatorURL != "" {
			p.GeneratorURL = am.generatorURL
		}
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations["incident"] = a.IncidentID
		if a.State == StateResolved {
			p.EndsAt = a.ResolvedAt
		} else {
			p.EndsAt = n.EndsAt
		}
		out = append(out, p)
	}
	body, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("alertmanager %s: encode: %w", am.name, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, am.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("alertmanager %s: %w", am.name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := am.client.Do(req)
	if err != nil {
		return fmt.Errorf("alertmanager %s: post %s: %w", am.name, am.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("alertmanager %s: post %s: %s: %s", am.name, am.url, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// SignatureHeader carries the HMAC-SHA256 of a webhook body:
// "sha256=" + hex.
const SignatureHeader = "X-Meshlens-Signature"

// Sign returns the SignatureHeader value of body under secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature checks a SignatureHeader value in constant time.
func VerifySignature(secret, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(header))
}

// Webhook delivers notifications as JSON to any HTTP endpoint, signed with
// HMAC-SHA256 when a secret is set, retrying network errors, 5xx and 429
// with exponential back-off. It is sent on changes only.
type Webhook struct {
	name        string
	url         string
	secret      []byte
	client      *http.Client
	MaxAttempts int
	MinBackoff  time.Duration
	MaxBackoff  time.Duration
}

// NewWebhook returns a webhook receiver posting to target.
func NewWebhook(name, target string, secret []byte, client *http.Client) (*Webhook, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("alert: webhook %q: bad URL %q: want http(s)://host/path", name, target)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Webhook{name: name, url: target, secret: secret, client: client, MaxAttempts: 5, MinBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second}, nil
}

// Name of the receiver.
func (w *Webhook) Name() string { return w.name }

// Repeat: webhooks hear about changes only.
func (w *Webhook) Repeat() bool { return false }

// WebhookPayload is the JSON body of a webhook.
type WebhookPayload struct {
	Version  string `json:"version"`
	Receiver string `json:"receiver"`
	Notification
}

// Send posts n, retrying with back-off.
func (w *Webhook) Send(ctx context.Context, n Notification) error {
	body, err := json.Marshal(WebhookPayload{Version: "1", Receiver: w.name, Notification: n})
	if err != nil {
		return fmt.Errorf("webhook %s: encode: %w", w.name, err)
	}
	return w.deliver(ctx, body)
}

// deliver posts body, retrying with back-off.
func (w *Webhook) deliver(ctx context.Context, body []byte) error {
	backoff := w.MinBackoff
	var last error
	for attempt := 1; attempt <= max(w.MaxAttempts, 1); attempt++ {
		retry, err := w.post(ctx, body)
		if err == nil {
			return nil
		}
		last = err
		if !retry || attempt == w.MaxAttempts {
			break
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(last, ctx.Err())
		case <-t.C:
		}
		backoff = min(backoff*2, w.MaxBackoff)
	}
	return last
}

func (w *Webhook) post(ctx context.Context, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("webhook %s: %w", w.name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if len(w.secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(w.secret, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return ctx.Err() == nil, fmt.Errorf("webhook %s: post %s: %w", w.name, w.url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	retry = resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
	return retry, fmt.Errorf("webhook %s: post %s: %s", w.name, w.url, resp.Status)
}
