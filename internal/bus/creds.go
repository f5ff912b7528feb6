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
//     and its own path-discovery subject, meshlens.paths.HOST;
//   - read only its own pinglist key and the fleet's responder key, through
//     the JetStream API subjects that name the key (consumer create with a
//     filter subject, direct get by subject), never the generic ones that
//     take the filter from the request body;
//   - receive replies only on its own inbox prefix, _INBOX.agent.HOST, so it
//     cannot listen to anybody else's replies (which would leak their
//     pinglists through their watches).
//
// The directory holds the three seeds (operator.nk, account.nk, system.nk,
// mode 0600) and issued.log, one line per credentials issued. Anyone who
// can read account.nk can mint credentials: keep it on the server.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
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
	}
	for _, k := range []struct{ bucket, key string }{
		{PinglistBucket, host},
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

	ac := jwt.NewAccountClaims(a.accountPub)
	ac.Name = AccountName
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	if a.accountJWT, err = ac.Encode(a.operator); err != nil {
		return nil, fmt.Errorf("bus: credentials dir %q: account jwt: %w", dir, err)
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
	if name == "" {
		return nil, errors.New("bus: privileged credentials need a name")
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
