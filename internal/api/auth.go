package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/internal/yamlfile"
)

// Role is what a caller may do. Roles are ordered: each includes the ones
// below it.
type Role int

const (
	// RoleNone is no access; as Config.AllowAnonymous it means every request
	// needs a token.
	RoleNone Role = iota
	// RoleViewer reads: dashboards, queries, topology, pairs.
	RoleViewer
	// RoleOperator also acts: silences, acknowledgements, remediation.
	RoleOperator
	// RoleAdmin also manages: tokens, configuration, the audit log.
	RoleAdmin
)

var roleNames = map[Role]string{RoleNone: "none", RoleViewer: "viewer", RoleOperator: "operator", RoleAdmin: "admin"}

func (r Role) String() string {
	if n, ok := roleNames[r]; ok {
		return n
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// ParseRole reads "viewer", "operator", "admin" or "none".
func ParseRole(s string) (Role, error) {
	for r, n := range roleNames {
		if s == n {
			return r, nil
		}
	}
	return RoleNone, fmt.Errorf("api: unknown role %q (want viewer, operator or admin)", s)
}

func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

func (r *Role) UnmarshalText(b []byte) error {
	v, err := ParseRole(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Token is one API credential as stored: only the SHA-256 of the secret is
// kept, so a leaked tokens file does not leak tokens.
type Token struct {
	Name   string
	Role   Role
	SHA256 [sha256.Size]byte
}

// HashToken is the hex SHA-256 of a secret, the form the tokens file holds.
func HashToken(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// GenerateToken makes a new random secret (256 bits, hex).
func GenerateToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("api: generate token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// tokenEntry is one item of the tokens file:
//
//   - {name: grafana, role: viewer, sha256: 9f86d0...}
type tokenEntry struct {
	Name   string `yaml:"name"`
	Role   string `yaml:"role"`
	SHA256 string `yaml:"sha256"`
}

// LoadTokens reads a tokens file.
func LoadTokens(path string) ([]Token, error) {
	b, err := yamlfile.ReadFile(path, yamlfile.MaxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("api: read tokens file: %w", err)
	}
	return ParseTokens(b, path)
}

// ParseTokens parses a tokens file's content; file names it in errors.
// Unknown keys, unknown roles, malformed hashes and duplicate names or
// hashes are errors that give the line.
func ParseTokens(data []byte, file string) ([]Token, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fmt.Errorf("api: tokens file %s: %w", file, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("api: tokens file %s:%d: want a list of {name, role, sha256}", file, root.Line)
	}
	var out []Token
	names := map[string]int{}
	hashes := map[[sha256.Size]byte]int{}
	for _, n := range root.Content {
		var e tokenEntry
		if err := decodeStrict(n, &e); err != nil {
			return nil, fmt.Errorf("api: tokens file %s:%d: %w", file, n.Line, err)
		}
		where := fmt.Sprintf("api: tokens file %s:%d", file, n.Line)
		if e.Name == "" {
			return nil, fmt.Errorf("%s: field name: empty", where)
		}
		if prev, dup := names[e.Name]; dup {
			return nil, fmt.Errorf("%s: field name: %q already used on line %d", where, e.Name, prev)
		}
		role, err := ParseRole(e.Role)
		if err != nil || role == RoleNone {
			return nil, fmt.Errorf("%s: field role: %q is not viewer, operator or admin", where, e.Role)
		}
		raw, err := hex.DecodeString(e.SHA256)
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("%s: field sha256: want %d hex digits (the SHA-256 of the token), got %d characters", where, 2*sha256.Size, len(e.SHA256))
		}
		t := Token{Name: e.Name, Role: role}
		copy(t.SHA256[:], raw)
		if prev, dup := hashes[t.SHA256]; dup {
			return nil, fmt.Errorf("%s: field sha256: same token as line %d", where, prev)
		}
		names[e.Name], hashes[t.SHA256] = n.Line, n.Line
		out = append(out, t)
	}
	return out, nil
}

// decodeStrict decodes one YAML node, rejecting unknown keys.
func decodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// Principal is who made a request.
type Principal struct {
	Name string `json:"name"` // token name, or "anonymous"
	Role Role   `json:"role"`
}

type principalKey struct{}

// PrincipalFrom returns the authenticated caller of a request handled by a
// route registered with Handle.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// authenticator maps bearer tokens to principals.
type authenticator struct {
	tokens    []Token
	anonymous Role
}

var (
	errNoToken  = errors.New("missing bearer token")
	errBadToken = errors.New("invalid bearer token")
)

// authenticate returns the caller of r. A request that presents a token is
// judged by it alone, even when anonymous access is allowed: a wrong token
// is an error worth telling its owner about.
func (a *authenticator) authenticate(r *http.Request) (Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		if a.anonymous > RoleNone {
			return Principal{Name: "anonymous", Role: a.anonymous}, nil
		}
		return Principal{}, errNoToken
	}
	scheme, secret, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return Principal{}, errBadToken
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(secret)))
	// Compare with every token, without stopping at a match, so that timing
	// tells nothing about which hash prefix was close.
	found := -1
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], a.tokens[i].SHA256[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Principal{}, errBadToken
	}
	return Principal{Name: a.tokens[found].Name, Role: a.tokens[found].Role}, nil
}

func withPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}
