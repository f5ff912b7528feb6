package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshlens/meshlens/internal/testpki"
)

func TestEmbeddedMutualTLS(t *testing.T) {
	pki := testpki.New(t, "meshlens")
	stranger := testpki.New(t, "stranger")
	srvCert, srvKey := pki.Issue(t, "server", x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := pki.Issue(t, "agent", x509.ExtKeyUsageClientAuth)
	strangerCert, strangerKey := stranger.Issue(t, "stranger", x509.ExtKeyUsageClientAuth)

	tc, err := ServerTLSConfig(TLSFiles{Cert: srvCert, Key: srvKey, CA: pki.File})
	if err != nil {
		t.Fatal(err)
	}
	emb, err := StartEmbedded(EmbeddedConfig{Addr: "127.0.0.1:-1", StoreDir: t.TempDir(), Configure: func(o *server.Options) { ConfigureTLS(o, tc) }})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	url := emb.ClientURL()
	inProcURL, inProc := InProcess(emb)

	clientTLS := func(f TLSFiles) nats.Option {
		c, err := ClientTLSConfig(f)
		if err != nil {
			t.Fatal(err)
		}
		return nats.Secure(c)
	}
	tests := []struct {
		name string
		opts []nats.Option
		ok   bool
	}{
		{"trusted client certificate", []nats.Option{clientTLS(TLSFiles{CA: pki.File, Cert: cliCert, Key: cliKey})}, true},
		{"no client certificate", []nats.Option{clientTLS(TLSFiles{CA: pki.File})}, false},
		{"client certificate from another CA", []nats.Option{clientTLS(TLSFiles{CA: pki.File, Cert: strangerCert, Key: strangerKey})}, false},
		{"server not trusted by the client", []nats.Option{clientTLS(TLSFiles{CA: stranger.File, Cert: cliCert, Key: cliKey})}, false},
		{"plaintext", nil, false},
		// The server's own connection never leaves the process.
		{"in-process", []nats.Option{inProc}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := url
			if tc.name == "in-process" {
				u = inProcURL
			}
			nc, err := nats.Connect(u, append(tc.opts, nats.Timeout(5*time.Second))...)
			if (err == nil) != tc.ok {
				t.Fatalf("connect: err %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				return
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := EnsureStreams(ctx, js, StreamSettings{}); err != nil {
				t.Fatalf("jetstream over TLS: %v", err)
			}
		})
	}
}

func TestTLSFilesErrors(t *testing.T) {
	pki := testpki.New(t, "meshlens")
	cert, key := pki.Issue(t, "server", x509.ExtKeyUsageServerAuth)
	notPEM := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(notPEM, []byte("junk"), 0o600)
	for _, tc := range []struct {
		name   string
		server bool
		f      TLSFiles
	}{
		{"server without key", true, TLSFiles{Cert: cert}},
		{"server with missing cert", true, TLSFiles{Cert: "/nonexistent.pem", Key: key}},
		{"server with junk CA", true, TLSFiles{Cert: cert, Key: key, CA: notPEM}},
		{"client with cert, no key", false, TLSFiles{Cert: cert}},
		{"client with missing CA", false, TLSFiles{CA: "/nonexistent.pem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.server {
				_, err = ServerTLSConfig(tc.f)
			} else {
				_, err = ClientTLSConfig(tc.f)
			}
			if err == nil {
				t.Fatal("accepted")
			}
			t.Logf("%v", err)
		})
	}
	c, err := ServerTLSConfig(TLSFiles{Cert: cert, Key: key})
	if err != nil || c.ClientAuth != tls.NoClientCert {
		t.Errorf("server without CA: %v, client auth %v", err, c.ClientAuth)
	}
}

func TestPlaintextOnlyOnLoopback(t *testing.T) {
	tests := []struct {
		name                string
		addr                string
		url                 bool
		encrypted, insecure bool
		ok                  bool
	}{
		{"loopback v4", "127.0.0.1:4222", false, false, false, true},
		{"loopback 127/8", "127.3.0.9:4222", false, false, false, true},
		{"loopback v6", "[::1]:4222", false, false, false, true},
		{"localhost", "localhost:9780", false, false, false, true},
		{"every interface", ":4222", false, false, false, false},
		{"unspecified", "0.0.0.0:4222", false, false, false, false},
		{"lan address", "10.0.0.1:4222", false, false, false, false},
		{"lan address with tls", "10.0.0.1:4222", false, true, false, true},
		{"lan address forced", "10.0.0.1:4222", false, false, true, true},
		{"url loopback", "nats://127.0.0.1:4222", true, false, false, true},
		{"url list, one remote", "nats://127.0.0.1:4222,nats://10.1.1.1:4222", true, false, false, false},
		{"url remote tls scheme", "tls://nats.example:4222", true, false, false, true},
		{"url remote without scheme", "nats.example:4222", true, false, false, false},
		{"url remote with tls config", "nats://nats.example:4222", true, true, false, true},
		{"url remote forced", "nats://nats.example:4222", true, false, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.url {
				err = CheckURLs("--nats-url", tc.addr, tc.encrypted, tc.insecure)
			} else {
				err = CheckListener("--nats-addr", tc.addr, tc.encrypted, tc.insecure)
			}
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrPlaintext) {
				t.Errorf("error %v does not wrap ErrPlaintext", err)
			}
		})
	}
}
