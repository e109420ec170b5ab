package kafka

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// Config says where the brokers are and how this client identifies itself.
type Config struct {
	// Brokers are the bootstrap "host:port" addresses.
	Brokers []string
	// ClientID is sent to the brokers (OpenWhisk uses "consumer-<topic>" and
	// the component name); empty keeps sarama's default.
	ClientID string
	// MaxMessageBytes bounds one produced record; 0 means MaxMessageBytes.
	MaxMessageBytes int
	// Logger receives errors that cannot be returned (background consumer
	// and commit failures); nil discards them.
	Logger *zap.Logger
	// SASL authenticates this client to the brokers; the zero value sends
	// no credentials (only for brokers that accept anyone).
	SASL SASL
	// TLS, when set, encrypts the connections (SASL_SSL); nil is
	// SASL_PLAINTEXT (or PLAINTEXT without SASL).
	TLS *tls.Config
}

// SASL mechanisms this package speaks. SCRAM-SHA-512 is the default: the
// password never crosses the wire and the broker proves it knows it too.
const (
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismPlain       = "PLAIN"
)

// SASL is a client's broker credentials.
type SASL struct {
	// Mechanism is one of the Mechanism* constants; empty means
	// SCRAM-SHA-512.
	Mechanism string
	User      string
	Password  string
}

// Enabled tells whether credentials are set.
func (s SASL) Enabled() bool { return s.User != "" }

// Validate refuses half-set credentials and unknown mechanisms.
func (s SASL) Validate() error {
	if s.User == "" && s.Password == "" {
		return nil
	}
	if s.User == "" || s.Password == "" {
		return errors.New("kafka: SASL needs both a user and a password")
	}
	switch s.mechanism() {
	case MechanismSCRAMSHA512, MechanismSCRAMSHA256, MechanismPlain:
		return nil
	}
	return fmt.Errorf("kafka: SASL mechanism %q is not one of %s, %s, %s", s.Mechanism,
		MechanismSCRAMSHA512, MechanismSCRAMSHA256, MechanismPlain)
}

func (s SASL) mechanism() string {
	if s.Mechanism == "" {
		return MechanismSCRAMSHA512
	}
	return s.Mechanism
}

// String never shows the password, so a Config can be logged.
func (s SASL) String() string {
	if !s.Enabled() {
		return "none"
	}
	return s.mechanism() + " as " + s.User
}

func (cfg Config) maxMessageBytes() int {
	if cfg.MaxMessageBytes <= 0 {
		return MaxMessageBytes
	}
	return cfg.MaxMessageBytes
}

func (cfg Config) logger() *zap.Logger {
	if cfg.Logger == nil {
		return zap.NewNop()
	}
	return cfg.Logger
}

// Tuning constants, shared by NewSaramaConfig and the documentation of the
// consumer. They are chosen for an invoker where one activation's latency
// matters far more than broker throughput.
const (
	// idleFetchWait is how long the broker may park an empty fetch of an
	// at-least-once consumer: Kafka's default fetch.max.wait.ms. A parked
	// fetch costs nothing: the broker answers it the moment a record
	// arrives, so the wait adds no latency to a record. What it bounds is
	// the polling of an idle partition, a fetch round trip per wait (at
	// 5 ms one idle consumer cost about 0.1 s of CPU per second of the
	// process; TestConsumer_IdleCPU), and how long the requests queued
	// behind it on the connection wait: the broker answers one
	// connection's requests in order, and sarama sends the group's
	// heartbeats and offset commits on the same connection as its fetches.
	// At-least-once commits are off the records' path (the committer) and
	// heartbeats every 250 ms with a 6 s session tolerate it.
	idleFetchWait = 500 * time.Millisecond
	// commitPathFetchWait is the at-most-once consumer's wait: its commit
	// is on the path of every record (commit, then hand out) and queues
	// behind the fetch sarama parks right after the record came, so the
	// wait is added to every record's hand-out (measured: about the wait).
	commitPathFetchWait = 5 * time.Millisecond
	// commitLinger is how long an at-least-once consumer lets further
	// records finish before it commits a moved watermark, so that one
	// commit (a round trip, and a write of the broker's group log) covers
	// the activations finishing meanwhile instead of one each. A crash
	// redelivers what finished in that window; the invoker's journal
	// answers those without running them, and the controller ignores acks
	// of activations it no longer waits for. Close and rebalances commit at
	// once.
	commitLinger = 250 * time.Millisecond
	// heartbeatInterval is how quickly a member notices a rebalance (a
	// restarted invoker rejoining its group waits about this long).
	heartbeatInterval = 250 * time.Millisecond
	// sessionTimeout is how long a silent member stays in the group. 6 s is
	// the smallest that kfake (and Kafka's default
	// group.min.session.timeout.ms) accepts; shorter means a crashed
	// invoker's partition is reassigned sooner.
	sessionTimeout = 6 * time.Second
	// retryBackoff replaces sarama's 2 s consumer and rebalance backoffs so
	// a broker hiccup costs a fraction of a second, not seconds.
	retryBackoff = 250 * time.Millisecond
	// maxRetryBackoff caps the Consumer's rejoin backoff while a session
	// keeps failing (e.g. the topic does not exist yet).
	maxRetryBackoff = 5 * time.Second
	// consumerChannelBuffer bounds what sarama prefetches per partition.
	// Flow control is the caller's (it stops reading Messages), so a deep
	// prefetch buffer would only add memory and redelivery on rebalance.
	consumerChannelBuffer = 16
	// brokerFramingHeadroom is what a record batch adds around one record
	// (61 B batch header plus the record's varints), rounded up generously.
	brokerFramingHeadroom = 1024
)

// NewSaramaConfig returns a sarama configuration tuned for low latency. Each
// knob says why it is set.
func NewSaramaConfig(cfg Config) *sarama.Config {
	sc := sarama.NewConfig()
	if cfg.ClientID != "" {
		sc.ClientID = cfg.ClientID
	}
	// sarama's default protocol version (2.8) is kept: it is supported by
	// every broker we target (kfake and Kafka 2.8+) and enables record
	// batches v2, which the size check in Producer.Send depends on.

	// Producer: one record at a time, acknowledged by the leader only.
	// OpenWhisk writes with acks=1; waiting for all replicas would add a
	// replication round trip to every ack.
	sc.Producer.RequiredAcks = sarama.WaitForLocal
	// Flush immediately: no linger, no batching threshold. An ack waiting
	// for a batch to fill is an activation waiting for nothing.
	sc.Producer.Flush.Frequency = 0
	sc.Producer.Flush.Messages = 0
	sc.Producer.Flush.Bytes = 0
	// No compression: payloads are small JSON and CPU is shared with the
	// functions; large results are shrunk by the caller instead.
	sc.Producer.Compression = sarama.CompressionNone
	// The same limit OpenWhisk uses for max.request.size, so an oversize ack
	// is refused locally and the caller can resend it shrunk.
	sc.Producer.MaxMessageBytes = cfg.maxMessageBytes()
	// Send reports success and failure per message.
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true

	// Consumer: answer as soon as one byte is there. NewConsumer sets the
	// longest park (MaxWaitTime) per consumer; this is the default.
	sc.Consumer.Fetch.Min = 1
	sc.Consumer.MaxWaitTime = idleFetchWait
	// Fetch a whole maximum-size record in one go instead of letting sarama
	// discover the size by doubling its fetch size.
	sc.Consumer.Fetch.Default = int32(cfg.maxMessageBytes() + brokerFramingHeadroom)
	sc.ChannelBufferSize = consumerChannelBuffer
	sc.Consumer.Retry.Backoff = retryBackoff
	// Errors are drained and logged by the Consumer rather than dropped.
	sc.Consumer.Return.Errors = true
	// Fast rebalance detection, with kfake's minimum session timeout.
	sc.Consumer.Group.Heartbeat.Interval = heartbeatInterval
	sc.Consumer.Group.Session.Timeout = sessionTimeout
	sc.Consumer.Group.Rebalance.Retry.Backoff = retryBackoff
	// Offsets are committed by the Consumer itself (watermark or at most
	// once), never by a timer that could commit unfinished records.
	sc.Consumer.Offsets.AutoCommit.Enable = false
	// auto.offset.reset=earliest, as OpenWhisk: a new group reads what the
	// controller wrote before the invoker came up.
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest

	sc.Metadata.Retry.Backoff = retryBackoff
	// sarama's client metrics (request rates, size and latency histograms
	// per broker and topic) are read by nothing here, and updating them
	// took about a twentieth of the process's CPU per activation (locks
	// and sample heaps on every request); the platform's own metrics are
	// the Prometheus ones.
	sc.MetricRegistry = discardMetrics{}

	if cfg.SASL.Enabled() {
		sc.Net.SASL.Enable = true
		// Handshake v1 wraps the exchange in SaslAuthenticate requests,
		// which SCRAM needs and every broker since Kafka 1.0 speaks.
		sc.Net.SASL.Version = sarama.SASLHandshakeV1
		sc.Net.SASL.Handshake = true
		sc.Net.SASL.User = cfg.SASL.User
		sc.Net.SASL.Password = cfg.SASL.Password
		switch m := cfg.SASL.mechanism(); m {
		case MechanismPlain:
			sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
		default:
			sc.Net.SASL.Mechanism = sarama.SASLMechanism(m)
			sc.Net.SASL.SCRAMClientGeneratorFunc = newSCRAMClient(m)
		}
	}
	if cfg.TLS != nil {
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = cfg.TLS
	}
	return sc
}
