package kafka

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"
)

// DefaultEmbeddedAddr is where the embedded broker listens unless told
// otherwise: loopback, random port.
const DefaultEmbeddedAddr = "127.0.0.1:0"

// ErrAddrInUse is StartEmbedded's error when another program listens on the address asked for.
// The embedded broker never moves to another port by itself: clients configured with the address
// would reach whatever listens there.
var ErrAddrInUse = errors.New("address already in use")

// EmbeddedOptions configures StartEmbedded.
type EmbeddedOptions struct {
	// DataDir keeps topics, records and committed offsets across a clean
	// Close and restart. Empty keeps everything in memory.
	//
	// kfake does not promise crash durability: after a kill it has been
	// seen to restore topics and committed offsets but no records until a
	// second restart. Production uses real Kafka brokers.
	DataDir string
	// Addr is the "ip:port" to listen on; DefaultEmbeddedAddr when empty.
	// Port 0 picks a random free port. The IP must be a specific address
	// (it is what clients are told to connect to), not 0.0.0.0.
	Addr string
	// Logger receives the broker's warnings and errors; nil discards them.
	Logger *zap.Logger
	// Users are the only clients the broker accepts (SASL), each limited to
	// its Grants (ACLs). Empty accepts any client on the listening address:
	// only tests of this package do that.
	Users []EmbeddedUser
}

// EmbeddedUser is a user of the embedded broker and what it may do.
type EmbeddedUser struct {
	SASL   SASL
	Grants []Grant
}

// Embedded is a one-broker Kafka-protocol server in this process (kfake),
// the default broker for running on one machine.
type Embedded struct {
	cluster *kfake.Cluster
}

// StartEmbedded starts the broker. Topics are created on first use with one
// partition (as OpenWhisk's topics have), and the broker accepts records of
// MaxMessageBytes plus record-batch framing, so the producer's limit is the
// one that applies on auto-created topics.
func StartEmbedded(opts EmbeddedOptions) (*Embedded, error) {
	addr := opts.Addr
	if addr == "" {
		addr = DefaultEmbeddedAddr
	}
	host, port, err := parseListenAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("kafka: embedded broker: %w", err)
	}
	var listenErr error // the listener's own error: kfake's may not wrap it
	kopts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		// kfake always asks for 127.0.0.1:<port>; listen on the requested
		// IP instead. The broker advertises the address it listens on.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			ln, err := net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
			listenErr = err
			return ln, err
		}),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(1),
		kfake.BrokerConfigs(map[string]string{
			"message.max.bytes": strconv.Itoa(MaxMessageBytes + brokerFramingHeadroom),
		}),
		kfake.ClusterID("teemate-embedded"),
	}
	if opts.Logger != nil {
		kopts = append(kopts, kfake.WithLogger(kfakeLogger{opts.Logger.Named("kfake")}))
	}
	if opts.DataDir != "" {
		// kfake would make it 0755; the log holds every activation's parameters.
		if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("kafka: embedded broker data dir: %w", err)
		}
		kopts = append(kopts, kfake.DataDir(opts.DataDir))
	}
	var bootstrap SASL
	if len(opts.Users) > 0 {
		for _, u := range opts.Users {
			if err := u.SASL.Validate(); err != nil || !u.SASL.Enabled() {
				return nil, fmt.Errorf("kafka: embedded broker user %q: %w", u.SASL.User, errors.Join(err, errors.New("needs a user and a password")))
			}
		}
		if err := forgetPersistedAuth(opts.DataDir); err != nil {
			return nil, fmt.Errorf("kafka: embedded broker: %w", err)
		}
		// With users configured kfake has no default superuser, and with ACLs on a user can do
		// nothing it was not granted. The grants are added over the protocol by a bootstrap
		// superuser whose random password exists only in this process and which is deleted
		// once they are in: kfake applies seeded ACLs only to a new data directory, and a
		// restarted broker must get this release's grants too.
		bootstrap = SASL{Mechanism: MechanismSCRAMSHA512, User: "teemate-bootstrap-" + randomHex(8), Password: randomHex(32)}
		kopts = append(kopts, kfake.EnableSASL(), kfake.EnableACLs(),
			kfake.Superuser(bootstrap.mechanism(), bootstrap.User, bootstrap.Password))
		for _, u := range opts.Users {
			kopts = append(kopts, kfake.User(u.SASL.mechanism(), u.SASL.User, u.SASL.Password))
		}
	}
	c, err := kfake.NewCluster(kopts...)
	if errors.Is(listenErr, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("kafka: embedded broker: %s: %w", addr, ErrAddrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("kafka: start embedded broker on %s (data dir %q): %w", addr, opts.DataDir, err)
	}
	e := &Embedded{cluster: c}
	if bootstrap.Enabled() {
		if err := e.grant(bootstrap, opts.Users); err != nil {
			e.Close()
			return nil, fmt.Errorf("kafka: embedded broker: %w", err)
		}
	}
	return e, nil
}

// parseListenAddr splits "ip:port" and refuses addresses clients could not
// be told to connect to.
func parseListenAddr(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("listen address %q: bad port %q", addr, portStr)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return "", 0, fmt.Errorf("listen address %q: host must be an IP address", addr)
	}
	if ip.IsUnspecified() {
		return "", 0, errors.New("listen address " + strconv.Quote(addr) +
			": an unspecified IP cannot be advertised to clients; use a specific one such as 127.0.0.1")
	}
	return host, port, nil
}

// Addrs returns the broker's "host:port" for Config.Brokers.
func (e *Embedded) Addrs() []string { return e.cluster.ListenAddrs() }

// Close stops the broker; with a DataDir it first writes its state there.
func (e *Embedded) Close() { e.cluster.Close() }

// kfakeLogger forwards kfake's warnings and errors to zap. Its info and
// debug levels log every request, which is noise here.
type kfakeLogger struct{ log *zap.Logger }

func (l kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	switch level {
	case kfake.LogLevelError:
		l.log.Error(fmt.Sprintf(format, args...))
	case kfake.LogLevelWarn:
		l.log.Warn(fmt.Sprintf(format, args...))
	}
}

// forgetPersistedAuth removes the users and ACLs a previous run persisted. They are configuration,
// rebuilt from EmbeddedOptions at every start; kfake would otherwise let the persisted ones replace
// the configured users (a data directory from a release without SASL has none, so nobody could
// connect; a regenerated password would be refused).
func forgetPersistedAuth(dataDir string) error {
	if dataDir == "" {
		return nil
	}
	for _, f := range []string{"sasl.json", "acls.json"} {
		if err := os.Remove(filepath.Join(dataDir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("reset persisted %s: %w", f, err)
		}
	}
	return nil
}

// grant adds every user's grants as the bootstrap superuser, then deletes that superuser.
func (e *Embedded) grant(bootstrap SASL, users []EmbeddedUser) error {
	admin, err := sarama.NewClusterAdmin(e.Addrs(), NewSaramaConfig(Config{ClientID: "teemate-bootstrap", SASL: bootstrap}))
	if err != nil {
		return fmt.Errorf("connect to set ACLs: %w", err)
	}
	defer admin.Close() //nolint:errcheck // closing a client after use; nothing to recover
	var acls []*sarama.ResourceAcls
	for _, u := range users {
		for _, g := range u.Grants {
			ra, err := resourceACL("User:"+u.SASL.User, g)
			if err != nil {
				return fmt.Errorf("user %q: %w", u.SASL.User, err)
			}
			acls = append(acls, ra)
		}
	}
	if err := admin.CreateACLs(acls); err != nil {
		return fmt.Errorf("set ACLs: %w", err)
	}
	res, err := admin.DeleteUserScramCredentials([]sarama.AlterUserScramCredentialsDelete{{Name: bootstrap.User, Mechanism: sarama.SCRAM_MECHANISM_SHA_512}})
	if err == nil {
		for _, r := range res {
			if r.ErrorCode != sarama.ErrNoError {
				err = r.ErrorCode
			}
		}
	}
	if err != nil {
		return fmt.Errorf("delete the bootstrap user: %w", err)
	}
	return nil
}

// resourceACL translates a grant into a sarama ACL binding (allow, any host).
func resourceACL(principal string, g Grant) (*sarama.ResourceAcls, error) {
	ops := map[string]sarama.AclOperation{
		"Read": sarama.AclOperationRead, "Write": sarama.AclOperationWrite, "Create": sarama.AclOperationCreate,
		"AlterConfigs": sarama.AclOperationAlterConfigs, "Describe": sarama.AclOperationDescribe,
	}
	resources := map[string]sarama.AclResourceType{"topic": sarama.AclResourceTopic, "group": sarama.AclResourceGroup}
	op, ok := ops[g.Operation]
	res, rok := resources[g.Resource]
	if !ok || !rok || g.Name == "" {
		return nil, fmt.Errorf("unsupported grant %q", g)
	}
	pattern := sarama.AclPatternLiteral
	if g.Prefixed {
		pattern = sarama.AclPatternPrefixed
	}
	return &sarama.ResourceAcls{
		Resource: sarama.Resource{ResourceType: res, ResourceName: g.Name, ResourcePatternType: pattern},
		Acls:     []*sarama.Acl{{Principal: principal, Host: "*", Operation: op, PermissionType: sarama.AclPermissionAllow}},
	}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("kafka: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}
