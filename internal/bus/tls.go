package bus

// TLS for the bus and, with the same helpers, for the HTTP API: loading
// PEM files into tls.Configs, and the rule that plaintext is allowed only
// on loopback unless the operator explicitly forces it.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ErrPlaintext is returned when a listener or a connection off loopback
// would carry plaintext and --insecure-plaintext was not given.
var ErrPlaintext = errors.New("plaintext is allowed only on loopback addresses: configure TLS or pass --insecure-plaintext")

// TLSFiles names PEM files. For a server: Cert and Key are its own, CA
// (optional) verifies client certificates (mTLS). For a client: CA
// verifies the server (empty: the system roots), Cert and Key (optional)
// are its client certificate.
type TLSFiles struct {
	Cert, Key, CA string
}

// Enabled reports whether any file is set.
func (f TLSFiles) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// ServerTLSConfig loads a server's certificate and, when f.CA is set,
// requires and verifies client certificates against it.
func ServerTLSConfig(f TLSFiles) (*tls.Config, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, fmt.Errorf("bus: tls: a server needs both a certificate and a key (cert %q, key %q)", f.Cert, f.Key)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("bus: tls: certificate %q, key %q: %w", f.Cert, f.Key, err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pool, err := loadPool(f.CA)
		if err != nil {
			return nil, err
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// ClientTLSConfig builds a client's TLS config: f.CA as the roots (empty:
// the system's), f.Cert and f.Key as the client certificate if both set.
func ClientTLSConfig(f TLSFiles) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pool, err := loadPool(f.CA)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	switch {
	case f.Cert != "" && f.Key != "":
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("bus: tls: client certificate %q, key %q: %w", f.Cert, f.Key, err)
		}
		c.Certificates = []tls.Certificate{cert}
	case f.Cert != "" || f.Key != "":
		return nil, fmt.Errorf("bus: tls: a client certificate needs both a certificate and a key (cert %q, key %q)", f.Cert, f.Key)
	}
	return c, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("bus: tls: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("bus: tls: CA file %q: no PEM certificate in it", file)
	}
	return pool, nil
}

// ConfigureTLS makes the embedded server require TLS with c; clients must
// present a certificate when c verifies them. In-process connections (the
// server's own) bypass TLS.
func ConfigureTLS(opts *server.Options, c *tls.Config) {
	opts.TLSConfig = c
	opts.TLS = true
	opts.TLSVerify = c.ClientAuth == tls.RequireAndVerifyClientCert
	opts.TLSTimeout = 5
}

// SecureEmbedded is an EmbeddedConfig.Configure that applies the
// credentials authority and TLS, each only when non-nil.
func SecureEmbedded(auth *Authority, c *tls.Config) func(*server.Options) {
	return func(o *server.Options) {
		if auth != nil {
			auth.Configure(o)
		}
		if c != nil {
			ConfigureTLS(o, c)
		}
	}
}

// InProcess is how the server process itself connects to its embedded
// NATS server: through memory, never the network, so no TLS is needed (and
// the server's certificate need not name the address it listens on). The
// URL is only a placeholder with a scheme that does not ask for TLS.
func InProcess(e *Embedded) (url string, opt nats.Option) {
	return "nats://in-process", nats.InProcessServer(e.Server())
}

// IsLoopback reports whether host (a name or an IP, no port) only ever
// reaches this machine. An empty host or an unspecified address listens on
// every interface, so it is not loopback.
func IsLoopback(host string) bool {
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckListener refuses a plaintext listener off loopback unless insecure.
// what names it in the error ("--http-addr").
func CheckListener(what, addr string, encrypted, insecure bool) error {
	if encrypted || insecure {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("bus: %s %q: %w", what, addr, err)
	}
	if !IsLoopback(host) {
		return fmt.Errorf("bus: %s %q: %w", what, addr, ErrPlaintext)
	}
	return nil
}

// CheckURLs refuses plaintext connections to any non-loopback server in a
// comma-separated NATS URL list unless encrypted (a TLS config is given)
// or insecure. A tls:// URL counts as encrypted.
func CheckURLs(what, urls string, encrypted, insecure bool) error {
	if encrypted || insecure {
		return nil
	}
	for _, raw := range strings.Split(urls, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		if !strings.Contains(raw, "://") {
			raw = "nats://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("bus: %s %q: %w", what, raw, err)
		}
		if u.Scheme == "tls" {
			continue
		}
		if !IsLoopback(u.Hostname()) {
			return fmt.Errorf("bus: %s %q: %w", what, raw, ErrPlaintext)
		}
	}
	return nil
}
