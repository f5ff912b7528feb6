package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/testkit"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

// securedBus is an embedded server in JWT mode with the streams and keys
// of the data path, set up through a privileged connection.
type securedBus struct {
	auth *Authority
	emb  *Embedded
	js   jetstream.JetStream // privileged
}

func startSecuredBus(t *testing.T, extra func(*server.Options)) *securedBus {
	t.Helper()
	auth, err := OpenAuthority(filepath.Join(t.TempDir(), "creds"))
	if err != nil {
		t.Fatal(err)
	}
	emb, err := StartEmbedded(EmbeddedConfig{
		Addr:     "127.0.0.1:-1",
		StoreDir: t.TempDir(),
		Configure: func(o *server.Options) {
			auth.Configure(o)
			if extra != nil {
				extra(o)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	priv, err := auth.PrivilegedOption("test-server")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(emb.ClientURL(), priv, nats.InProcessServer(emb.Server()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := EnsureStreams(ctx, js, StreamSettings{}); err != nil {
		t.Fatal(err)
	}
	pl, _ := js.KeyValue(ctx, PinglistBucket)
	ev, _ := js.KeyValue(ctx, EvidenceBucket)
	fleet, _ := js.KeyValue(ctx, FleetBucket)
	for _, h := range []string{"h1", "h2"} {
		if _, err := pl.Put(ctx, h, []byte(`{"host":"`+h+`"}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := ev.Put(ctx, h, []byte(`{"host":"`+h+`","probes":4}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fleet.Put(ctx, ResponderKeyKey, []byte("0123456789abcdef0123")); err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.Put(ctx, "other-secret", []byte("x")); err != nil {
		t.Fatal(err)
	}
	return &securedBus{auth: auth, emb: emb, js: js}
}

// asAgent connects with host's freshly issued credentials, collecting
// the asynchronous permission errors the server sends.
type agentConn struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	creds string // file

	mu   sync.Mutex
	errs []string
}

func (b *securedBus) asAgent(t *testing.T, host string) *agentConn {
	t.Helper()
	creds, err := b.auth.IssueAgent(host, 0)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), host+".creds")
	if err := os.WriteFile(file, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	a := &agentConn{creds: file}
	a.nc, err = nats.Connect(b.emb.ClientURL(), nats.UserCredentials(file), nats.CustomInboxPrefix(AgentInboxPrefix(host)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			a.mu.Lock()
			a.errs = append(a.errs, err.Error())
			a.mu.Unlock()
		}))
	if err != nil {
		t.Fatalf("agent %s connect: %v", host, err)
	}
	t.Cleanup(a.nc.Close)
	if a.js, err = jetstream.New(a.nc); err != nil {
		t.Fatal(err)
	}
	return a
}

// sawViolation polls for the server's permission error naming subject.
func (a *agentConn) sawViolation(t *testing.T, subject string) {
	t.Helper()
	testkit.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		a.mu.Lock()
		errs := strings.Join(a.errs, "\n")
		a.mu.Unlock()
		if strings.Contains(errs, "Permissions Violation") && strings.Contains(errs, subject) {
			return nil
		}
		return fmt.Errorf("no permissions violation for %q; errors seen: %q", subject, errs)
	})
}

func TestAgentCredentialsDoOwnWork(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	// In a subtest, so that its cleanups (server, connections) run before
	// the leak check.
	t.Run("h1", agentDoesOwnWork)
}

func agentDoesOwnWork(t *testing.T) {
	b := startSecuredBus(t, nil)
	// Issued after the server started: no restart or reload needed.
	a := b.asAgent(t, "h1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ack, err := a.js.Publish(ctx, ResultsSubject(0, "h1"), []byte("batch"), jetstream.WithMsgID(BatchMsgID("h1", 1, 1)))
	if err != nil {
		t.Fatalf("publish own results: %v", err)
	}
	if ack.Stream != ResultsStream {
		t.Errorf("acked by stream %q", ack.Stream)
	}
	// A replay of the same batch is acknowledged as a duplicate.
	if ack, err = a.js.Publish(ctx, ResultsSubject(0, "h1"), []byte("batch"), jetstream.WithMsgID(BatchMsgID("h1", 1, 1))); err != nil || !ack.Duplicate {
		t.Errorf("replayed publish: ack %+v, err %v", ack, err)
	}

	// Path discoveries: a core publish on its own subject reaches the server.
	paths, err := b.js.Conn().SubscribeSync(PathsSubjects)
	if err != nil {
		t.Fatal(err)
	}
	// The subscription must reach the server before the publish does.
	if err := b.js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	if err := a.nc.Publish(PathsSubject("h1"), []byte("paths")); err != nil {
		t.Fatal(err)
	}
	if m, err := paths.NextMsg(10 * time.Second); err != nil || m.Subject != PathsSubject("h1") {
		t.Errorf("path report: %v %v", m, err)
	}
	paths.Unsubscribe()

	// Hello: a request on its own subject, answered to its own inbox.
	hello, err := b.js.Conn().Subscribe(HelloSubjects, func(m *nats.Msg) { _ = m.Respond([]byte(`{"known":true}`)) })
	if err != nil {
		t.Fatal(err)
	}
	if err := b.js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := a.nc.Request(HelloSubject("h1"), nil, 10*time.Second); err != nil || string(m.Data) != `{"known":true}` {
		t.Errorf("hello: %v %v", m, err)
	}
	hello.Unsubscribe()

	for _, tc := range []struct{ bucket, key, want string }{
		{PinglistBucket, "h1", `{"host":"h1"}`},
		{EvidenceBucket, "h1", `{"host":"h1","probes":4}`},
		{FleetBucket, ResponderKeyKey, "0123456789abcdef0123"},
	} {
		kv, err := a.js.KeyValue(ctx, tc.bucket)
		if err != nil {
			t.Fatalf("bucket %s: %v", tc.bucket, err)
		}
		e, err := kv.Get(ctx, tc.key)
		if err != nil || string(e.Value()) != tc.want {
			t.Errorf("get %s/%s: %v %q", tc.bucket, tc.key, err, entryValue(e))
		}
		w, err := kv.Watch(ctx, tc.key)
		if err != nil {
			t.Fatalf("watch %s/%s: %v", tc.bucket, tc.key, err)
		}
		select {
		case e := <-w.Updates():
			if e == nil || string(e.Value()) != tc.want {
				t.Errorf("watch %s/%s: first update %q", tc.bucket, tc.key, entryValue(e))
			}
		case <-ctx.Done():
			t.Fatalf("watch %s/%s: no update", tc.bucket, tc.key)
		}
		if tc.bucket == PinglistBucket {
			// A new pinglist reaches the watch.
			pl, _ := b.js.KeyValue(ctx, PinglistBucket)
			if _, err := pl.Put(ctx, "h1", []byte(`{"host":"h1","version":2}`)); err != nil {
				t.Fatal(err)
			}
			for e := range w.Updates() {
				if e != nil && strings.Contains(string(e.Value()), `"version":2`) {
					break
				}
			}
		}
		if err := w.Stop(); err != nil {
			t.Error(err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.errs) > 0 {
		t.Errorf("own work raised errors: %q", a.errs)
	}
}

func entryValue(e jetstream.KeyValueEntry) string {
	if e == nil {
		return "<nil>"
	}
	return string(e.Value())
}

func TestAgentCredentialsRefuseOthersWork(t *testing.T) {
	b := startSecuredBus(t, nil)
	ctx := context.Background()
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 2*time.Second) }

	tests := []struct {
		name      string
		try       func(a *agentConn) error
		violation string // subject the server must name, "" for a JetStream refusal
	}{
		{"publish as another host", func(a *agentConn) error {
			c, cancel := short()
			defer cancel()
			_, err := a.js.Publish(c, ResultsSubject(0, "h2"), []byte("forged"))
			return err
		}, ResultsSubject(0, "h2")},
		{"publish paths as another host", func(a *agentConn) error {
			return a.nc.Publish(PathsSubject("h2"), []byte("forged"))
		}, PathsSubject("h2")},
		{"hello as another host", func(a *agentConn) error {
			return a.nc.Publish(HelloSubject("h2"), nil)
		}, HelloSubject("h2")},
		{"publish outside the results subjects", func(a *agentConn) error {
			return a.nc.Publish("$KV.meshlens-pinglists.h2", []byte("{}"))
		}, "$KV.meshlens-pinglists.h2"},
		{"get another host's pinglist", getOther(short, PinglistBucket, "h2"), "$JS.API.DIRECT.GET.KV_meshlens-pinglists.$KV.meshlens-pinglists.h2"},
		{"watch another host's pinglist", watchOther(short, PinglistBucket, "h2"), "$JS.API.CONSUMER.CREATE.KV_meshlens-pinglists"},
		{"watch another host's evidence requests", watchOther(short, EvidenceBucket, "h2"), "$JS.API.CONSUMER.CREATE.KV_meshlens-evidence"},
		{"get another host's evidence requests", getOther(short, EvidenceBucket, "h2"), "$JS.API.DIRECT.GET.KV_meshlens-evidence.$KV.meshlens-evidence.h2"},
		{"watch every pinglist", func(a *agentConn) error {
			c, cancel := short()
			defer cancel()
			kv, err := a.js.KeyValue(c, PinglistBucket)
			if err != nil {
				return err
			}
			w, err := kv.WatchAll(c)
			if err == nil {
				w.Stop()
			}
			return err
		}, "$JS.API.CONSUMER.CREATE.KV_meshlens-pinglists"},
		{"read another fleet key", getOther(short, FleetBucket, "other-secret"), "$KV.meshlens-fleet.other-secret"},
		{"consumer whose subject names its own key but whose config filters another's", func(a *agentConn) error {
			return forgedConsumer(a, "$JS.API.CONSUMER.CREATE.KV_meshlens-pinglists.x.$KV.meshlens-pinglists.h1", "$KV.meshlens-pinglists.h2")
		}, ""},
		{"consumer through the legacy endpoint, filter in the body", func(a *agentConn) error {
			return forgedConsumer(a, "$JS.API.CONSUMER.CREATE.KV_meshlens-pinglists", "$KV.meshlens-pinglists.h2")
		}, "$JS.API.CONSUMER.CREATE.KV_meshlens-pinglists"},
		{"listen to everybody's replies", func(a *agentConn) error {
			sub, err := a.nc.SubscribeSync("_INBOX.>")
			if err != nil {
				return err
			}
			a.nc.Flush()
			return sub.Unsubscribe()
		}, "_INBOX.>"},
		{"listen to the results", func(a *agentConn) error {
			sub, err := a.nc.SubscribeSync(ResultsSubjectPrefix + ".>")
			if err != nil {
				return err
			}
			a.nc.Flush()
			return sub.Unsubscribe()
		}, ResultsSubjectPrefix + ".>"},
		{"read the results stream", func(a *agentConn) error {
			c, cancel := short()
			defer cancel()
			_, err := a.js.Stream(c, ResultsStream)
			return err
		}, "$JS.API.STREAM.INFO.RESULTS"},
		{"delete the pinglists", func(a *agentConn) error {
			c, cancel := short()
			defer cancel()
			return a.js.DeleteKeyValue(c, PinglistBucket)
		}, "$JS.API.STREAM.DELETE.KV_meshlens-pinglists"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := b.asAgent(t, "h1")
			err := tc.try(a)
			if tc.violation != "" {
				a.sawViolation(t, tc.violation)
				return
			}
			if err == nil {
				t.Fatal("refused by nobody")
			}
			t.Logf("refused: %v", err)
		})
	}

	// Nothing reached h2's subject and h2's pinglist is untouched.
	st, err := b.js.Stream(ctx, ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(ResultsSubjectPrefix+".>"))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[ResultsSubject(0, "h2")]; n != 0 {
		t.Errorf("%d forged messages on h2's subject", n)
	}
	pl, _ := b.js.KeyValue(ctx, PinglistBucket)
	if e, err := pl.Get(ctx, "h2"); err != nil || string(e.Value()) != `{"host":"h2"}` {
		t.Errorf("h2's pinglist: %v %q", err, entryValue(e))
	}
}

// forgedConsumer asks JetStream for a push consumer on subject with
// filter in its config, and reports the API's refusal.
func forgedConsumer(a *agentConn, subject, filter string) error {
	req, _ := json.Marshal(map[string]any{
		"stream_name": "KV_" + PinglistBucket,
		"config": map[string]any{
			"name": "x", "filter_subject": filter, "deliver_subject": AgentInboxPrefix("h1") + ".steal",
			"ack_policy": "none", "deliver_policy": "last_per_subject",
		},
	})
	resp, err := a.nc.Request(subject, req, 2*time.Second)
	if err != nil {
		return err
	}
	var r struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return err
	}
	if r.Error == nil {
		return nil
	}
	return errors.New(r.Error.Description)
}

func TestNoCredentialsNoEntry(t *testing.T) {
	b := startSecuredBus(t, nil)
	other, err := OpenAuthority(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := other.IssueAgent("h1", 0)
	if err != nil {
		t.Fatal(err)
	}
	forgedFile := filepath.Join(t.TempDir(), "forged.creds")
	if err := os.WriteFile(forgedFile, forged, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts []nats.Option
	}{
		{"anonymous", nil},
		{"credentials from another authority", []nats.Option{nats.UserCredentials(forgedFile)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := nats.Connect(b.emb.ClientURL(), tc.opts...)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Errorf("error %v, want an authorization violation", err)
			}
		})
	}
}

func TestCheckHostName(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"dc1-pod2-rack5-h07", true},
		{"", false},
		{"h1.evil", false},
		{"*", false},
		{">", false},
		{"$SYS", false},
		{"a b", false},
	} {
		err := CheckHostName(tc.host)
		if (err == nil) != tc.ok {
			t.Errorf("CheckHostName(%q) = %v", tc.host, err)
		}
	}
}

func TestAuthorityReopensSameKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "creds")
	a1, err := OpenAuthority(dir)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := OpenAuthority(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a1.accountPub != a2.accountPub || a1.systemPub != a2.systemPub {
		t.Error("reopening the directory changed the keys")
	}
	for _, f := range []string{operatorSeedFile, accountSeedFile, systemSeedFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
}

func TestRevokedAgentIsDisconnected(t *testing.T) {
	b := startSecuredBus(t, nil)
	h1, h2 := b.asAgent(t, "h1"), b.asAgent(t, "h2")
	ctx, cancel := context.WithCancel(context.Background())
	watchDone := make(chan error, 1)
	go func() { watchDone <- b.auth.WatchRevocations(ctx, b.emb, 20*time.Millisecond, nil) }()
	defer func() { cancel(); <-watchDone }()

	if _, err := b.auth.Revoke("nobody"); err == nil {
		t.Error("revoking a name never issued succeeded")
	}
	n, err := b.auth.Revoke("h1")
	if err != nil || n != 1 {
		t.Fatalf("revoke h1: %d keys, %v", n, err)
	}
	testkit.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if h1.nc.IsConnected() {
			return errors.New("revoked agent still connected")
		}
		return nil
	})
	if nc, err := nats.Connect(b.emb.ClientURL(), nats.UserCredentials(h1.creds)); err == nil {
		nc.Close()
		t.Error("revoked credentials connect again")
	}
	// The others are untouched, and a restart keeps the revocation.
	pubCtx, pubCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pubCancel()
	if _, err := h2.js.Publish(pubCtx, ResultsSubject(0, "h2"), []byte("batch")); err != nil {
		t.Errorf("h2 after h1's revocation: %v", err)
	}
	reopened, err := OpenAuthority(b.auth.Dir())
	if err != nil {
		t.Fatal(err)
	}
	ac, err := jwt.DecodeAccountClaims(reopened.accountJWT)
	if err != nil {
		t.Fatal(err)
	}
	if len(ac.Revocations) != 1 {
		t.Errorf("reopened authority revokes %d keys, want 1", len(ac.Revocations))
	}
}

// getOther and watchOther try to read key of bucket as agent a.
func getOther(short func() (context.Context, context.CancelFunc), bucket, key string) func(a *agentConn) error {
	return func(a *agentConn) error {
		c, cancel := short()
		defer cancel()
		kv, err := a.js.KeyValue(c, bucket)
		if err != nil {
			return err
		}
		_, err = kv.Get(c, key)
		return err
	}
}

func watchOther(short func() (context.Context, context.CancelFunc), bucket, key string) func(a *agentConn) error {
	return func(a *agentConn) error {
		c, cancel := short()
		defer cancel()
		kv, err := a.js.KeyValue(c, bucket)
		if err != nil {
			return err
		}
		w, err := kv.Watch(c, key)
		if err == nil {
			w.Stop()
		}
		return err
	}
}
