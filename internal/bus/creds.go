package bus

// Per-agent NATS credentials.
//
// The bus runs in NATS's decentralized JWT mode when a credentials directory
// is configured: an operator key signs one account ("meshlens", JetStream
// on) and the system account; the account key signs user JWTs. The server
// trusts the operator and resolves the two account JWTs from memory, so it
// never needs to know the users: a newly issued agent connects without a
// server restart or reload. Each agent's JWT carries its subject
// permissions, which the NATS server enforces:
//
//   - publish only to its own results subject, meshlens.results.*.HOST,
//     its own path-discovery subject, meshlens.paths.HOST, and its own
//     hello, meshlens.hello.HOST;
//   - read only its own pinglist and evidence keys and the fleet's
//     responder key, through the JetStream API subjects that name the key
//     (consumer create with a filter subject, direct get by subject),
//     never the generic ones that take the filter from the request body;
//   - receive replies only on its own inbox prefix, _INBOX.agent.HOST, so it
//     cannot listen to anybody else's replies (which would leak their
//     pinglists through their watches).
//
// The directory holds the three seeds (operator.nk, account.nk, system.nk,
// mode 0600), issued.log, one line per credentials issued, and revoked.log,
// one line per user key revoked (meshlens creds revoke HOST): the account
// JWT carries the revocations and the running server applies them within
// seconds, disconnecting the revoked users. Anyone who can read account.nk
// can mint credentials: keep it on the server.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Names and files of the credentials authority.
const (
	// AccountName is the NATS account all of meshlens lives in.
	AccountName = "meshlens"
	// AgentInboxRoot prefixes every agent's reply inbox: agents must
	// connect with nats.CustomInboxPrefix(AgentInboxPrefix(host)).
	AgentInboxRoot = "_INBOX.agent"

	operatorSeedFile = "operator.nk"
	accountSeedFile  = "account.nk"
	systemSeedFile   = "system.nk"
	issuedLogFile    = "issued.log"
	revokedLogFile   = "revoked.log"
)

// ErrBadHostName is returned for a host name that is not one NATS subject
// token: it would widen the agent's permissions.
var ErrBadHostName = errors.New("host name must be one subject token: no '.', '*', '>', '$' or whitespace")

// CheckHostName refuses names that would escape the agent's subject scope.
func CheckHostName(host string) error {
	if host == "" || strings.ContainsAny(host, ".*>$ \t\r\n") || len(host) > 253 {
		return fmt.Errorf("bus: host %q: %w", host, ErrBadHostName)
	}
	return nil
}

// AgentInboxPrefix is the inbox prefix of host's agent connection.
func AgentInboxPrefix(host string) string { return AgentInboxRoot + "." + host }

// AgentPermissions is exactly what host's agent may do on the bus: the
// subjects nats.go's jetstream KV Watch and Get and a JetStream publish
// with its PubAck use for the agent's own keys and subject, nothing else.
func AgentPermissions(host string) (pub, sub []string) {
	pub = []string{
		ResultsSubjectPrefix + ".*." + host,
		// Path discoveries: core NATS, no reply.
		PathsSubject(host),
		// Is this host in the topology? (request-reply to its own inbox)
		HelloSubject(host),
	}
	for _, k := range []struct{ bucket, key string }{
		{PinglistBucket, host},
		{EvidenceBucket, host},
		{FleetBucket, ResponderKeyKey},
	} {
		stream := "KV_" + k.bucket
		subject := "$KV." + k.bucket + "." + k.key
		pub = append(pub,
			// js.KeyValue(bucket) looks the stream up.
			"$JS.API.STREAM.INFO."+stream,
			// Watch: an ordered push consumer, created with the filter in
			// the API subject (the server checks it matches the config).
			"$JS.API.CONSUMER.CREATE."+stream+".*."+subject,
			// An ordered consumer that sees a gap deletes its old consumer.
			"$JS.API.CONSUMER.DELETE."+stream+".*",
			// Flow-control replies of the ordered consumer.
			"$JS.FC."+stream+".>",
			// Get: direct get of the last message on the key's subject.
			"$JS.API.DIRECT.GET."+stream+"."+subject,
		)
	}
	sub = []string{AgentInboxPrefix(host) + ".>"}
	return pub, sub
}

// Authority is the credentials directory: it mints user credentials and
// configures the embedded server to trust them. Safe for concurrent use
// (it is immutable once opened).
type Authority struct {
	dir                       string
	operator, account, system nkeys.KeyPair
	operatorJWT               *jwt.OperatorClaims
	accountJWT, systemJWT     string
	accountPub, systemPub     string
	// resolver hands the server the two account JWTs from memory.
	resolver *server.MemAccResolver
}

// OpenAuthority loads the keys in dir, creating the directory and any
// missing key. Two processes opening a fresh directory at once agree on
// the keys: each seed file is created exclusively.
func OpenAuthority(dir string) (*Authority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bus: credentials dir %q: %w", dir, err)
	}
	a := &Authority{dir: dir}
	var err error
	if a.operator, err = loadOrCreateSeed(filepath.Join(dir, operatorSeedFile), nkeys.CreateOperator); err != nil {
		return nil, err
	}
	if a.account, err = loadOrCreateSeed(filepath.Join(dir, accountSeedFile), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if a.system, err = loadOrCreateSeed(filepath.Join(dir, systemSeedFile), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	opPub, _ := a.operator.PublicKey()
	a.accountPub, _ = a.account.PublicKey()
	a.systemPub, _ = a.system.PublicKey()

	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "meshlens"
	oc.SystemAccount = a.systemPub
	if _, err := oc.Encode(a.operator); err != nil {
		return nil, fmt.Errorf("bus: credentials dir %q: operator jwt: %w", dir, err)
	}
	a.operatorJWT = oc

	if _, a.accountJWT, err = a.accountClaims(); err != nil {
		return nil, err
	}
	sc := jwt.NewAccountClaims(a.systemPub)
	sc.Name = "SYS"
	if a.systemJWT, err = sc.Encode(a.operator); err != nil {
		return nil, fmt.Errorf("bus: credentials dir %q: system account jwt: %w", dir, err)
	}
	a.resolver = &server.MemAccResolver{}
	for pub, token := range map[string]string{a.accountPub: a.accountJWT, a.systemPub: a.systemJWT} {
		if err := a.resolver.Store(pub, token); err != nil {
			return nil, fmt.Errorf("bus: credentials dir %q: account resolver: %w", dir, err)
		}
	}
	return a, nil
}

// accountClaims is the meshlens account's JWT with the revocations of
// revoked.log.
func (a *Authority) accountClaims() (*jwt.AccountClaims, string, error) {
	ac := jwt.NewAccountClaims(a.accountPub)
	ac.Name = AccountName
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	revoked, err := a.revocations()
	if err != nil {
		return nil, "", err
	}
	for pub, at := range revoked {
		ac.RevokeAt(pub, at)
	}
	token, err := ac.Encode(a.operator)
	if err != nil {
		return nil, "", fmt.Errorf("bus: credentials dir %q: account jwt: %w", a.dir, err)
	}
	return ac, token, nil
}

// revocations reads revoked.log: user key, tab, RFC 3339 time.
func (a *Authority) revocations() (map[string]time.Time, error) {
	path := filepath.Join(a.dir, revokedLogFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bus: revocations: %w", err)
	}
	out := map[string]time.Time{}
	for i, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		pub, at, ok := strings.Cut(line, "\t")
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(at))
		if !ok || err != nil || !nkeys.IsValidPublicUserKey(pub) {
			return nil, fmt.Errorf("bus: revocations: %s:%d: want USER-KEY<tab>RFC3339-TIME, got %q", path, i+1, line)
		}
		out[pub] = t
	}
	return out, nil
}

// Revoke revokes every user key issued so far for name (a host, or a
// privileged user's name) and reports how many. The server applies it
// within seconds (WatchRevocations); credentials issued afterwards for the
// same name are new keys and work.
func (a *Authority) Revoke(name string) (int, error) {
	b, err := os.ReadFile(filepath.Join(a.dir, issuedLogFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("bus: issued log: %w", err)
	}
	var keys []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, "\t")
		if len(f) >= 3 && (f[1] == "agent "+name || f[1] == "privileged "+name) {
			keys = append(keys, f[2])
		}
	}
	if len(keys) == 0 {
		return 0, fmt.Errorf("bus: no credentials were issued for %q (see %s)", name, filepath.Join(a.dir, issuedLogFile))
	}
	f, err := os.OpenFile(filepath.Join(a.dir, revokedLogFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, fmt.Errorf("bus: revocations: %w", err)
	}
	// JWT times have second resolution: revoke everything issued up to
	// the next second, so credentials minted this very second go too.
	at := time.Now().Add(time.Second).UTC().Format(time.RFC3339)
	for _, k := range keys {
		if _, err = fmt.Fprintf(f, "%s\t%s\n", k, at); err != nil {
			break
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("bus: revocations: %w", err)
	}
	return len(keys), nil
}

// WatchRevocations re-reads revoked.log every interval until ctx ends and
// pushes a changed account JWT to the running embedded server, which
// closes the connections of revoked users. A bad file is logged and
// retried; the last good revocations stay in force.
func (a *Authority) WatchRevocations(ctx context.Context, e *Embedded, every time.Duration, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last := a.accountJWT
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		ac, token, err := a.accountClaims()
		if err != nil {
			logger.Error("revocations not applied", "err", err)
			continue
		}
		// Tokens differ on every encoding (iat, jti): compare the lists.
		prev, err := jwt.DecodeAccountClaims(last)
		if err == nil && maps.Equal(prev.Revocations, ac.Revocations) {
			continue
		}
		acc, err := e.srv.LookupAccount(a.accountPub)
		if err != nil {
			logger.Error("revocations not applied", "err", err)
			continue
		}
		if err := a.resolver.Store(a.accountPub, token); err != nil {
			logger.Error("revocations not applied", "err", err)
			continue
		}
		e.srv.UpdateAccountClaims(acc, ac)
		last = token
		logger.Info("credentials revocations applied", "revoked_keys", len(ac.Revocations))
	}
}

func loadOrCreateSeed(path string, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	if seed, err := os.ReadFile(path); err == nil {
		kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
		if err != nil {
			return nil, fmt.Errorf("bus: key file %q: %w", path, err)
		}
		return kp, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("bus: key file %q: %w", path, err)
	}
	kp, err := create()
	if err != nil {
		return nil, fmt.Errorf("bus: new key for %q: %w", path, err)
	}
	seed, _ := kp.Seed()
	// Write aside, then link into place: the link fails if another process
	// won the race, and then its key is the one to use.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".seed-*")
	if err != nil {
		return nil, fmt.Errorf("bus: key file %q: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(seed, '\n')); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("bus: key file %q: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("bus: key file %q: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("bus: key file %q: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadOrCreateSeed(path, create)
		}
		return nil, fmt.Errorf("bus: key file %q: %w", path, err)
	}
	return kp, nil
}

// Dir is the credentials directory.
func (a *Authority) Dir() string { return a.dir }

// Configure puts the embedded server in JWT mode trusting this authority;
// use it as (part of) EmbeddedConfig.Configure (see SecureEmbedded).
func (a *Authority) Configure(opts *server.Options) {
	opts.TrustedOperators = []*jwt.OperatorClaims{a.operatorJWT}
	opts.AccountResolver = a.resolver
	opts.SystemAccount = a.systemPub
	opts.NoAuthUser = ""
}

// IssueAgent mints host's agent credentials (a .creds file's content):
// the permissions of AgentPermissions and nothing more. expires 0 means
// they do not expire.
func (a *Authority) IssueAgent(host string, expires time.Duration) ([]byte, error) {
	if err := CheckHostName(host); err != nil {
		return nil, err
	}
	pub, sub := AgentPermissions(host)
	return a.issue("agent "+host, "agent-"+host, expires, func(uc *jwt.UserClaims) {
		uc.Pub.Allow.Add(pub...)
		uc.Sub.Allow.Add(sub...)
	})
}

// IssuePrivileged mints credentials that may do anything in the meshlens
// account: for the server itself, sim live and operators' tools.
func (a *Authority) IssuePrivileged(name string, expires time.Duration) ([]byte, error) {
	// Same rule as host names: the name goes into issued.log and revoke.
	if err := CheckHostName(name); err != nil {
		return nil, fmt.Errorf("bus: privileged credentials: %w", err)
	}
	return a.issue("privileged "+name, name, expires, func(*jwt.UserClaims) {})
}

func (a *Authority) issue(what, name string, expires time.Duration, permit func(*jwt.UserClaims)) ([]byte, error) {
	user, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("bus: credentials for %s: %w", what, err)
	}
	userPub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(userPub)
	uc.Name = name
	if expires > 0 {
		uc.Expires = time.Now().Add(expires).Unix()
	}
	permit(uc)
	token, err := uc.Encode(a.account)
	if err != nil {
		return nil, fmt.Errorf("bus: credentials for %s: %w", what, err)
	}
	seed, _ := user.Seed()
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		return nil, fmt.Errorf("bus: credentials for %s: %w", what, err)
	}
	if err := a.logIssued(what, userPub, uc.Expires); err != nil {
		return nil, err
	}
	return creds, nil
}

// logIssued keeps a record of every user key issued: what revocation
// (account JWT revocations) would need.
func (a *Authority) logIssued(what, userPub string, expires int64) error {
	f, err := os.OpenFile(filepath.Join(a.dir, issuedLogFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("bus: issued log: %w", err)
	}
	exp := "never"
	if expires > 0 {
		exp = time.Unix(expires, 0).UTC().Format(time.RFC3339)
	}
	_, err = fmt.Fprintf(f, "%s\t%s\t%s\texpires=%s\n", time.Now().UTC().Format(time.RFC3339), what, userPub, exp)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bus: issued log: %w", err)
	}
	return nil
}

// PrivilegedOption is a nats.go option connecting as a privileged user
// minted on the spot (the server's own connection).
func (a *Authority) PrivilegedOption(name string) (nats.Option, error) {
	creds, err := a.IssuePrivileged(name, 0)
	if err != nil {
		return nil, err
	}
	token, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return nil, fmt.Errorf("bus: credentials for %s: %w", name, err)
	}
	kp, err := jwt.ParseDecoratedNKey(creds)
	if err != nil {
		return nil, fmt.Errorf("bus: credentials for %s: %w", name, err)
	}
	seed, _ := kp.Seed()
	return nats.UserJWTAndSeed(token, string(seed)), nil
}
