// Package diagnose holds the operator's troubleshooters ("is it the
// network?"): they run against a running meshlens server through its HTTP
// API, never inside it, so they work from any shell with a token.
//
// It imports the packages whose JSON it reads (alert, slo), never the
// server's internals.
package diagnose

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultServer is where meshlens server listens by default.
const DefaultServer = "http://127.0.0.1:9780"

// TokenEnv names the environment variable holding the API token.
const TokenEnv = "MESHLENS_TOKEN"

// ErrUnreachable is wrapped by errors from a server that could not be
// reached at all (as opposed to one that answered with an error).
var ErrUnreachable = errors.New("meshlens server unreachable")

// Client calls a meshlens server's JSON API. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// NewClient returns a client for the server at base (http(s)://host:port),
// sending token as a bearer token when set.
func NewClient(base, token string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("diagnose: --server %q: want http(s)://host:port", base)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: u, token: token, http: hc}, nil
}

// APIError is an error answer of the server.
type APIError struct {
	Status    int
	ErrorType string
	Message   string
}

func (e *APIError) Error() string {
	if e.ErrorType != "" {
		return fmt.Sprintf("server answered %d %s: %s", e.Status, e.ErrorType, e.Message)
	}
	return fmt.Sprintf("server answered %d: %s", e.Status, e.Message)
}

// Get fetches path (with query q) and decodes the "data" of the API's
// {"status":"success","data":...} envelope into out.
func (c *Client) Get(ctx context.Context, path string, q url.Values, out any) error {
	return c.do(ctx, http.MethodGet, path, q, nil, out, nil)
}

// Post sends in as JSON to path and decodes the answer's "data" into out.
func (c *Client) Post(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("diagnose: POST %s: %w", path, err)
	}
	return c.do(ctx, http.MethodPost, path, nil, body, out, nil)
}

// do sends the request and decodes the answer's "data" into out, and
// each of fields' top-level keys of the envelope beside it (when there)
// into its value.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, reqBody []byte, out any, fields map[string]any) error {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	var rd io.Reader
	if reqBody != nil {
		rd = bytes.NewReader(reqBody)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("diagnose: %s %s: %w", method, u.String(), err)
	}
	if reqBody != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("diagnose: %w at %s (is it running? set --server or $MESHLENS_SERVER): %w", ErrUnreachable, c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("diagnose: %s %s: read answer: %w", method, path, err)
	}
	var env struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Status == "" {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("diagnose: %s %s: %w", method, path, &APIError{Status: resp.StatusCode, Message: msg})
		}
		return fmt.Errorf("diagnose: %s %s: not a meshlens API answer: %q", method, path, msg)
	}
	if env.Status != "success" {
		return fmt.Errorf("diagnose: %s %s: %w", method, path, &APIError{Status: resp.StatusCode, ErrorType: env.ErrorType, Message: env.Error})
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("diagnose: %s %s: decode data: %w", method, path, err)
	}
	if len(fields) == 0 {
		return nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return fmt.Errorf("diagnose: %s %s: %w", method, path, err)
	}
	for name, v := range fields {
		if raw, ok := top[name]; ok {
			if err := json.Unmarshal(raw, v); err != nil {
				return fmt.Errorf("diagnose: %s %s: decode %s: %w", method, path, name, err)
			}
		}
	}
	return nil
}
