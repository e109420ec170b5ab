package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/IBM/sarama"
)

// ErrMessageTooLarge is returned (wrapped) by Producer.Send when a record is
// larger than the producer's or the topic's limit. OpenWhisk's invoker reacts
// to it by resending the ack in its shrunk form.
var ErrMessageTooLarge = errors.New("kafka: message too large")

// ErrProducerClosed is returned by Send after Close.
var ErrProducerClosed = errors.New("kafka: producer closed")

// recordBatchVersion is the record format sarama writes for the protocol
// version NewSaramaConfig keeps (>= 0.11).
const recordBatchVersion = 2

// Producer writes records synchronously. It is safe for concurrent use.
type Producer struct {
	ap       sarama.AsyncProducer
	maxBytes int

	mu     sync.RWMutex // guards closed against sends into a closed input
	closed bool

	done sync.WaitGroup // the two result dispatchers
}

// NewProducer connects to cfg.Brokers.
func NewProducer(cfg Config) (*Producer, error) {
	sc := NewSaramaConfig(cfg)
	ap, err := sarama.NewAsyncProducer(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka: new producer for %v: %w", cfg.Brokers, err)
	}
	p := &Producer{ap: ap, maxBytes: sc.Producer.MaxMessageBytes}
	// Each message carries its own result channel in Metadata, so one
	// dispatcher per sarama result channel routes outcomes back to Send.
	p.done.Add(2)
	go func() {
		defer p.done.Done()
		for m := range ap.Successes() {
			m.Metadata.(chan error) <- nil
		}
	}()
	go func() {
		defer p.done.Done()
		for pe := range ap.Errors() {
			pe.Msg.Metadata.(chan error) <- pe.Err
		}
	}()
	return p, nil
}

// Send writes value to topic without a key, as OpenWhisk does, and waits for
// the leader's acknowledgement. A record over the limit fails with an error
// that satisfies errors.Is(err, ErrMessageTooLarge), whether the limit was
// found locally or by the broker. If ctx ends first Send returns ctx.Err();
// the record may still be written.
func (p *Producer) Send(ctx context.Context, topic string, value []byte) error {
	msg := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(value)}
	// The same measure sarama applies, checked here so the caller gets a
	// typed error rather than sarama's configuration error text.
	if size := msg.ByteSize(recordBatchVersion); size > p.maxBytes {
		return fmt.Errorf("kafka: send to %q: record of %d bytes (value %d bytes) exceeds the %d-byte limit: %w",
			topic, size, len(value), p.maxBytes, ErrMessageTooLarge)
	}
	result := make(chan error, 1)
	msg.Metadata = result

	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return fmt.Errorf("kafka: send to %q: %w", topic, ErrProducerClosed)
	}
	select {
	case p.ap.Input() <- msg:
	case <-ctx.Done():
		p.mu.RUnlock()
		return fmt.Errorf("kafka: send to %q: %w", topic, ctx.Err())
	}
	p.mu.RUnlock()

	select {
	case err := <-result:
		return sendError(topic, len(value), err)
	case <-ctx.Done():
		return fmt.Errorf("kafka: send to %q: %w", topic, ctx.Err())
	}
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

// Close flushes records in flight and disconnects. Sends after Close fail
// with ErrProducerClosed.
func (p *Producer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	// AsyncClose rather than Close: the dispatchers already drain the
	// result channels, and sarama's Close would compete with them.
	p.ap.AsyncClose()
	p.done.Wait()
	return nil
}
