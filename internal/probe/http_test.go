package probe

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/wire"
)

func TestHTTPProbe(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("status: healthy")) })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusInternalServerError) })
	mux.HandleFunc("/created", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/huge", func(w http.ResponseWriter, _ *http.Request) {
		// The marker comes after the body limit: never read, never found.
		w.Write([]byte(strings.Repeat("x", 4<<10) + "MARKER"))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tlsSrv := httptest.NewTLSServer(mux)
	defer tlsSrv.Close()
	closed := func() string {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := l.Addr().String()
		l.Close()
		return "http://" + addr + "/"
	}()

	trusting := &HTTPProber{TLS: tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig, MaxBody: 1 << 10}
	plain := &HTTPProber{MaxBody: 1 << 10}
	tests := []struct {
		name     string
		p        *HTTPProber
		check    HTTPCheck
		want     wire.Outcome
		status   uint32
		bodyOK   bool
		tls      bool
		connects bool
	}{
		{"ok", plain, HTTPCheck{URL: srv.URL + "/ok", ExpectBody: "healthy"}, wire.Outcome_OUTCOME_OK, 200, true, false, true},
		{"body missing", plain, HTTPCheck{URL: srv.URL + "/ok", ExpectBody: "degraded"}, wire.Outcome_OUTCOME_BAD_RESPONSE, 200, false, false, true},
		{"5xx", plain, HTTPCheck{URL: srv.URL + "/fail"}, wire.Outcome_OUTCOME_BAD_RESPONSE, 500, true, false, true},
		{"expected status", plain, HTTPCheck{URL: srv.URL + "/created", ExpectStatus: 201}, wire.Outcome_OUTCOME_OK, 201, true, false, true},
		{"unexpected 2xx", plain, HTTPCheck{URL: srv.URL + "/ok", ExpectStatus: 204}, wire.Outcome_OUTCOME_BAD_RESPONSE, 200, true, false, true},
		{"redirect not followed", plain, HTTPCheck{URL: srv.URL + "/redirect"}, wire.Outcome_OUTCOME_BAD_RESPONSE, 302, true, false, true},
		{"body read bounded", plain, HTTPCheck{URL: srv.URL + "/huge", ExpectBody: "MARKER"}, wire.Outcome_OUTCOME_BAD_RESPONSE, 200, false, false, true},
		{"timeout", plain, HTTPCheck{URL: srv.URL + "/slow"}, wire.Outcome_OUTCOME_LOST, 0, false, false, true},
		{"refused", plain, HTTPCheck{URL: closed}, wire.Outcome_OUTCOME_REFUSED, 0, false, false, false},
		{"bad url", plain, HTTPCheck{URL: "::nope"}, wire.Outcome_OUTCOME_ERROR, 0, false, false, false},
		{"tls", trusting, HTTPCheck{URL: tlsSrv.URL + "/ok", ExpectBody: "healthy"}, wire.Outcome_OUTCOME_OK, 200, true, true, true},
		{"tls unknown authority", plain, HTTPCheck{URL: tlsSrv.URL + "/ok"}, wire.Outcome_OUTCOME_BAD_RESPONSE, 0, false, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			timeout := 10 * time.Second // the first verification loads the system roots
			if tc.want == wire.Outcome_OUTCOME_LOST {
				timeout = 300 * time.Millisecond
			}
			res := tc.p.Probe(context.Background(), Target{Name: "svc", Protocol: wire.Protocol_PROTOCOL_HTTP, HTTP: tc.check, Timeout: timeout})
			if res.Outcome != tc.want {
				t.Fatalf("outcome %v (%s), want %v", res.Outcome, res.Error, tc.want)
			}
			h := res.Http
			if res.Dst != "svc" || h == nil || h.Status != tc.status || (tc.status != 0 && h.BodyOk != tc.bodyOK) {
				t.Fatalf("result %v", res)
			}
			if tc.connects && (h.ConnectNs <= 0 || res.SrcPort == 0 || res.DstAddr != "127.0.0.1") {
				t.Errorf("connect %d, 5-tuple %s:%d -> %s:%d", h.ConnectNs, res.SrcAddr, res.SrcPort, res.DstAddr, res.DstPort)
			}
			if tc.tls && h.TlsNs <= 0 {
				t.Errorf("tls time %d", h.TlsNs)
			}
			if tc.status != 0 && (h.FirstByteNs <= 0 || res.RttNs < h.FirstByteNs) {
				t.Errorf("first byte %d, total %d", h.FirstByteNs, res.RttNs)
			}
		})
	}
}
