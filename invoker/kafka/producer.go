package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// ErrMessageTooLarge is returned (wrapped) by Producer.Send when a record is
// larger than the producer's or the topic's limit. OpenWhisk's invoker reacts
// to it by resending the ack in its shrunk form.
var ErrMessageTooLarge = errors.New("kafka: message too large")

// ErrProducerClosed is returned by Send after Close.
var ErrProducerClosed = errors.New("kafka: producer closed")

// recordBatchVersion is the record format of the produce requests below
// (Kafka >= 0.11's record batches).
const recordBatchVersion = 2

// produceRequestVersion is the ProduceRequest version sarama itself sends
// for the protocol version NewSaramaConfig keeps (2.8): v9.
const produceRequestVersion = 9

// Producer writes records synchronously. It is safe for concurrent use.
//
// Each Send writes its own produce request (one record batch of one record)
// on the partition leader's connection from the caller's goroutine and waits
// for that request's response; sarama's async producer, used before, passed
// every record through five goroutines on the way out and three on the way
// back, each a wake-up on the activation's path (bench/README.md, "The Go
// path"). What it did besides is kept here: the local and the broker's size
// limits, retries of retriable broker errors and of broken connections
// after a metadata refresh (Producer.Retry.Max times, Producer.Retry.Backoff
// apart), and partitions chosen in turn among those with a leader (a record
// has no key, as in OpenWhisk).
type Producer struct {
	client   sarama.Client
	maxBytes int
	timeout  time.Duration // the broker's wait for the leader's write
	retries  int
	backoff  time.Duration
	next     atomic.Uint32 // the partition turn

	mu       sync.Mutex // guards closed and the add to inflight
	closed   bool
	inflight sync.WaitGroup
}

// NewProducer connects to cfg.Brokers.
func NewProducer(cfg Config) (*Producer, error) {
	sc := NewSaramaConfig(cfg)
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka: new producer for %v: %w", cfg.Brokers, err)
	}
	return &Producer{
		client:   client,
		maxBytes: sc.Producer.MaxMessageBytes,
		timeout:  sc.Producer.Timeout,
		retries:  sc.Producer.Retry.Max,
		backoff:  sc.Producer.Retry.Backoff,
	}, nil
}

// Send writes value to topic without a key, as OpenWhisk does, and waits for
// the leader's acknowledgement. A record over the limit fails with an error
// that satisfies errors.Is(err, ErrMessageTooLarge), whether the limit was
// found locally or by the broker. If ctx ends first Send returns ctx.Err();
// the record may still be written.
func (p *Producer) Send(ctx context.Context, topic string, value []byte) error {
	// The measure sarama applies to a record, checked before anything is
	// sent so the caller gets a typed error.
	msg := sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(value)}
	if size := msg.ByteSize(recordBatchVersion); size > p.maxBytes {
		return fmt.Errorf("kafka: send to %q: record of %d bytes (value %d bytes) exceeds the %d-byte limit: %w",
			topic, size, len(value), p.maxBytes, ErrMessageTooLarge)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return fmt.Errorf("kafka: send to %q: %w", topic, ErrProducerClosed)
	}
	p.inflight.Add(1)
	p.mu.Unlock()
	defer p.inflight.Done()

	for attempt := 0; ; attempt++ {
		err := p.produce(ctx, topic, value)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("kafka: send to %q: %w", topic, ctx.Err())
		case attempt == p.retries || !retriable(err):
			return sendError(topic, len(value), err)
		}
		// A stale leader, a topic still being created or a broken connection:
		// the next attempt asks the brokers again. A failed refresh shows in
		// that attempt's own error, so its error is not kept.
		_ = p.client.RefreshMetadata(topic)
		select {
		case <-time.After(p.backoff):
		case <-ctx.Done():
			return fmt.Errorf("kafka: send to %q: %w", topic, ctx.Err())
		}
	}
}

// produce sends one produce request of one record and waits for its response.
func (p *Producer) produce(ctx context.Context, topic string, value []byte) error {
	parts, err := p.client.WritablePartitions(topic)
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		return sarama.ErrLeaderNotAvailable
	}
	part := parts[int(p.next.Add(1)-1)%len(parts)]
	leader, err := p.client.Leader(topic, part)
	if err != nil {
		return err
	}
	now := time.Now().Truncate(time.Millisecond)
	req := &sarama.ProduceRequest{
		RequiredAcks: sarama.WaitForLocal,
		Timeout:      int32(p.timeout / time.Millisecond),
		Version:      produceRequestVersion,
	}
	// No producer id: neither idempotent nor transactional, as configured.
	req.AddBatch(topic, part, &sarama.RecordBatch{
		Version: recordBatchVersion, FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		Records: []*sarama.Record{{Value: value}},
	})
	type reply struct {
		resp *sarama.ProduceResponse
		err  error
	}
	// The callback runs on the connection's response reader and must not
	// block it: the channel has room for its one send.
	done := make(chan reply, 1)
	if err := leader.AsyncProduce(req, func(resp *sarama.ProduceResponse, err error) { done <- reply{resp, err} }); err != nil {
		return brokenConnection(leader, err)
	}
	var r reply
	select {
	case r = <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if r.err != nil {
		return brokenConnection(leader, r.err)
	}
	block := r.resp.GetBlock(topic, part)
	if block == nil {
		return fmt.Errorf("the broker's response has no result for partition %d", part)
	}
	if !errors.Is(block.Err, sarama.ErrNoError) {
		return block.Err
	}
	return nil
}

// errBrokenConnection marks a request that failed on its connection, which
// is closed so that the next attempt dials again (Client.Leader reopens it).
var errBrokenConnection = errors.New("broker connection failed")

func brokenConnection(b *sarama.Broker, err error) error {
	// The connection is being abandoned; its close error adds nothing.
	_ = b.Close()
	return fmt.Errorf("%w: %w", errBrokenConnection, err)
}

// retriable reports whether another attempt, after a metadata refresh, may
// succeed: the broker errors sarama's async producer retries, and a broken
// connection.
func retriable(err error) bool {
	var netErr net.Error
	switch {
	case errors.Is(err, errBrokenConnection), errors.As(err, &netErr):
		return true
	case errors.Is(err, sarama.ErrUnknownTopicOrPartition), errors.Is(err, sarama.ErrLeaderNotAvailable),
		errors.Is(err, sarama.ErrNotLeaderForPartition), errors.Is(err, sarama.ErrRequestTimedOut),
		errors.Is(err, sarama.ErrNotEnoughReplicas), errors.Is(err, sarama.ErrNotEnoughReplicasAfterAppend),
		errors.Is(err, sarama.ErrKafkaStorageError), errors.Is(err, sarama.ErrOutOfBrokers):
		return true
	}
	return false
}

// sendError classifies a produce result; the broker's MESSAGE_TOO_LARGE
// (the topic's max.message.bytes) becomes ErrMessageTooLarge too.
func sendError(topic string, n int, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sarama.ErrMessageSizeTooLarge):
		return fmt.Errorf("kafka: send %d bytes to %q: %w: %w", n, topic, ErrMessageTooLarge, err)
	default:
		return fmt.Errorf("kafka: send %d bytes to %q: %w", n, topic, err)
	}
}

// Close waits for the sends in flight and disconnects. Sends after Close fail
// with ErrProducerClosed.
func (p *Producer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.inflight.Wait()
	if err := p.client.Close(); err != nil {
		return fmt.Errorf("kafka: close producer: %w", err)
	}
	return nil
}
