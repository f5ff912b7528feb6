package bus

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// testPKI is a CA and certificates it signed, as PEM files in a directory.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	CAFile string
}

func newTestPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), ca: ca, caKey: key}
	p.CAFile = p.write(t, name+"-ca.pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	file := filepath.Join(p.dir, name)
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// issue signs a leaf certificate for 127.0.0.1 and returns its cert and
// key files.
func (p *testPKI) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", keyDER)
}

func TestEmbeddedMutualTLS(t *testing.T) {
	pki := newTestPKI(t, "meshlens")
	stranger := newTestPKI(t, "stranger")
	srvCert, srvKey := pki.issue(t, "server", x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := pki.issue(t, "agent", x509.ExtKeyUsageClientAuth)
	strangerCert, strangerKey := stranger.issue(t, "stranger", x509.ExtKeyUsageClientAuth)

	tc, err := ServerTLSConfig(TLSFiles{Cert: srvCert, Key: srvKey, CA: pki.CAFile})
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
		{"trusted client certificate", []nats.Option{clientTLS(TLSFiles{CA: pki.CAFile, Cert: cliCert, Key: cliKey})}, true},
		{"no client certificate", []nats.Option{clientTLS(TLSFiles{CA: pki.CAFile})}, false},
		{"client certificate from another CA", []nats.Option{clientTLS(TLSFiles{CA: pki.CAFile, Cert: strangerCert, Key: strangerKey})}, false},
		{"server not trusted by the client", []nats.Option{clientTLS(TLSFiles{CA: stranger.CAFile, Cert: cliCert, Key: cliKey})}, false},
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
	pki := newTestPKI(t, "meshlens")
	cert, key := pki.issue(t, "server", x509.ExtKeyUsageServerAuth)
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
