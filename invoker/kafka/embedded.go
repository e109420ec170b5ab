package kafka

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// DefaultEmbeddedAddr is where the embedded broker listens unless told
// otherwise: loopback, random port.
const DefaultEmbeddedAddr = "127.0.0.1:0"

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
	// TLS, when set, makes the broker accept TLS connections only.
	TLS *tls.Config
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
	kopts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		// kfake always asks for 127.0.0.1:<port>; listen on the requested
		// IP instead. The broker advertises the address it listens on.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
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
		kopts = append(kopts, kfake.DataDir(opts.DataDir))
	}
	if len(opts.Users) > 0 {
		// With users configured kfake has no default superuser, and with
		// ACLs on a user can do nothing it was not granted.
		kopts = append(kopts, kfake.EnableSASL(), kfake.EnableACLs())
		for _, u := range opts.Users {
			if err := u.SASL.Validate(); err != nil || !u.SASL.Enabled() {
				return nil, fmt.Errorf("kafka: embedded broker user %q: %w", u.SASL.User, errors.Join(err, errors.New("needs a user and a password")))
			}
			acls, err := kfakeACLs(u.Grants)
			if err != nil {
				return nil, fmt.Errorf("kafka: embedded broker user %q: %w", u.SASL.User, err)
			}
			kopts = append(kopts, kfake.User(u.SASL.mechanism(), u.SASL.User, u.SASL.Password, acls...))
		}
	}
	if opts.TLS != nil {
		kopts = append(kopts, kfake.TLS(opts.TLS))
	}
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: start embedded broker on %s (data dir %q): %w", addr, opts.DataDir, err)
	}
	return &Embedded{cluster: c}, nil
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

// kfakeACLs translates grants into kfake's seed ACLs.
func kfakeACLs(grants []Grant) ([]kfake.ACL, error) {
	ops := map[string]kmsg.ACLOperation{
		"Read": kmsg.ACLOperationRead, "Write": kmsg.ACLOperationWrite, "Create": kmsg.ACLOperationCreate,
		"AlterConfigs": kmsg.ACLOperationAlterConfigs, "Describe": kmsg.ACLOperationDescribe,
	}
	resources := map[string]kmsg.ACLResourceType{"topic": kmsg.ACLResourceTypeTopic, "group": kmsg.ACLResourceTypeGroup}
	out := make([]kfake.ACL, 0, len(grants))
	for _, g := range grants {
		op, ok := ops[g.Operation]
		res, rok := resources[g.Resource]
		if !ok || !rok || g.Name == "" {
			return nil, fmt.Errorf("unsupported grant %q", g)
		}
		pattern := kmsg.ACLResourcePatternTypeLiteral
		if g.Prefixed {
			pattern = kmsg.ACLResourcePatternTypePrefixed
		}
		out = append(out, kfake.ACL{Resource: res, Name: g.Name, Pattern: pattern, Operation: op, Allow: true})
	}
	return out, nil
}
