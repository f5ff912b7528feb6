package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/meshlens/meshlens/internal/clock"
	"github.com/meshlens/meshlens/internal/wire"
)

// DefaultHTTPMaxBody bounds how much of a response body is read (and
// searched for ExpectBody).
const DefaultHTTPMaxBody = 64 << 10

// HTTPProber GETs service endpoints, with a DNS / connect / TLS / first
// byte breakdown. Every probe opens a new connection (no keep-alive), so
// connect and TLS are measured each time, and redirects are not followed:
// the status is the target's own.
type HTTPProber struct {
	Clock clock.Clock
	// TLS is the client TLS configuration (e.g. a private CA); nil uses
	// the system roots.
	TLS *tls.Config
	// MaxBody bounds the body read (default DefaultHTTPMaxBody).
	MaxBody int64

	once   sync.Once
	client *http.Client
}

func (p *HTTPProber) init() {
	p.once.Do(func() {
		if p.Clock == nil {
			p.Clock = clock.Real{}
		}
		if p.MaxBody <= 0 {
			p.MaxBody = DefaultHTTPMaxBody
		}
		p.client = &http.Client{
			Transport: &http.Transport{
				// Probes go direct: a proxy would measure itself.
				Proxy:             nil,
				DialContext:       (&net.Dialer{}).DialContext,
				TLSClientConfig:   p.TLS,
				DisableKeepAlives: true,
				// A probe that sends gzip would time decompression.
				DisableCompression:     true,
				MaxResponseHeaderBytes: 64 << 10,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	})
}

// Probe implements SyncProber.
func (p *HTTPProber) Probe(ctx context.Context, t Target) *wire.ProbeResult {
	p.init()
	start := p.Clock.Now()
	res := newResult(t, start)
	timing := &wire.HTTPTiming{}
	res.Http = timing
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		mu                                   sync.Mutex
		dnsStart, connStart, tlsStart, first time.Time
	)
	since := func(t0 time.Time) int64 {
		if t0.IsZero() {
			return 0
		}
		return int64(p.Clock.Now().Sub(t0))
	}
	trace := &httptrace.ClientTrace{
		DNSStart: func(httptrace.DNSStartInfo) { mu.Lock(); dnsStart = p.Clock.Now(); mu.Unlock() },
		DNSDone:  func(httptrace.DNSDoneInfo) { mu.Lock(); timing.DnsNs = since(dnsStart); mu.Unlock() },
		ConnectStart: func(string, string) {
			mu.Lock()
			connStart = p.Clock.Now()
			mu.Unlock()
		},
		ConnectDone: func(_, addr string, _ error) {
			mu.Lock()
			defer mu.Unlock()
			timing.ConnectNs = since(connStart)
			// Known even when TLS then fails and GotConn never comes.
			if ap, err := netip.ParseAddrPort(addr); err == nil {
				res.DstAddr, res.DstPort = ap.Addr().Unmap().String(), uint32(ap.Port())
			}
		},
		TLSHandshakeStart: func() {
			mu.Lock()
			tlsStart = p.Clock.Now()
			mu.Unlock()
		},
		TLSHandshakeDone: func(tls.ConnectionState, error) { mu.Lock(); timing.TlsNs = since(tlsStart); mu.Unlock() },
		GotConn: func(info httptrace.GotConnInfo) {
			mu.Lock()
			defer mu.Unlock()
			if a, ok := info.Conn.LocalAddr().(*net.TCPAddr); ok {
				ap := a.AddrPort()
				res.SrcAddr, res.SrcPort = ap.Addr().Unmap().String(), uint32(ap.Port())
			}
			if a, ok := info.Conn.RemoteAddr().(*net.TCPAddr); ok {
				ap := a.AddrPort()
				res.DstAddr, res.DstPort = ap.Addr().Unmap().String(), uint32(ap.Port())
			}
		},
		GotFirstResponseByte: func() { mu.Lock(); first = p.Clock.Now(); mu.Unlock() },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, t.HTTP.URL, nil)
	if err != nil {
		res.Outcome, res.Error = wire.Outcome_OUTCOME_ERROR, shortError(fmt.Errorf("probe: http target %s: %w", t.Name, err))
		return res
	}
	req.Header.Set("User-Agent", "meshlens-agent")
	resp, err := p.client.Do(req)
	if err != nil {
		mu.Lock()
		defer mu.Unlock()
		res.Outcome, res.Error = classifyHTTPError(err), shortError(err)
		return res
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, p.MaxBody))
	resp.Body.Close()
	end := p.Clock.Now()
	mu.Lock()
	defer mu.Unlock()
	if !first.IsZero() {
		timing.FirstByteNs = int64(first.Sub(start))
	}
	res.RttNs = int64(end.Sub(start))
	timing.Status = uint32(resp.StatusCode)
	if err != nil {
		res.Outcome, res.Error = classifyHTTPError(err), shortError(fmt.Errorf("reading body: %w", err))
		return res
	}
	statusOK := resp.StatusCode/100 == 2
	if t.HTTP.ExpectStatus != 0 {
		statusOK = resp.StatusCode == t.HTTP.ExpectStatus
	}
	timing.BodyOk = t.HTTP.ExpectBody == "" || bytes.Contains(body, []byte(t.HTTP.ExpectBody))
	switch {
	case !statusOK:
		res.Outcome, res.Error = wire.Outcome_OUTCOME_BAD_RESPONSE, fmt.Sprintf("status %d", resp.StatusCode)
	case !timing.BodyOk:
		res.Outcome, res.Error = wire.Outcome_OUTCOME_BAD_RESPONSE, shortError(fmt.Errorf("body lacks %q", t.HTTP.ExpectBody))
	default:
		res.Outcome = wire.Outcome_OUTCOME_OK
	}
	return res
}

func classifyHTTPError(err error) wire.Outcome {
	var (
		ne       net.Error
		certErr  *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return wire.Outcome_OUTCOME_LOST
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return wire.Outcome_OUTCOME_REFUSED
	case errors.As(err, &certErr), errors.As(err, &unknown), errors.As(err, &hostname):
		// The service answered with a certificate we do not accept: it
		// is reachable and wrong.
		return wire.Outcome_OUTCOME_BAD_RESPONSE
	}
	return wire.Outcome_OUTCOME_ERROR
}
