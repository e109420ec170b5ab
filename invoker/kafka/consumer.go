package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/teemate/platform/internal/lograte"
)

// Message is one record handed out by a Consumer. Pass it to Consumer.Done
// once the work it asks for needs no redelivery.
type Message struct {
	Topic     string
	Partition int32
	Offset    int64
	Value     []byte
	Timestamp time.Time
}

// ConsumerOptions adjusts delivery.
type ConsumerOptions struct {
	// AtMostOnce commits each record's offset before handing it out, as
	// OpenWhisk's MessageFeed does: a crash loses what was handed out but
	// never redelivers it. Done is then a no-op.
	AtMostOnce bool
	// Buffer is the capacity of the Messages channel. 0 (unbuffered) means
	// a caller that stops reading stops the consumer pulling: the caller
	// does flow control by bounding its in-flight work.
	Buffer int
	// FetchWait is how long the broker may hold a fetch that finds no
	// record (fetch.max.wait.ms). A record arriving answers it at once, so
	// it is no delay for records; it bounds how often an idle consumer
	// polls, and how long its group's heartbeats and commits can queue
	// behind the held fetch. 0 means 500 ms, or 5 ms with AtMostOnce, whose
	// commit before each hand-out would otherwise wait out the fetch.
	FetchWait time.Duration
}

func (o ConsumerOptions) fetchWait() time.Duration {
	switch {
	case o.FetchWait > 0:
		return o.FetchWait
	case o.AtMostOnce:
		return commitPathFetchWait
	}
	return idleFetchWait
}

// Consumer is a member of one consumer group reading one topic. It keeps
// consuming across rebalances and broker failures (logging them) until
// Close.
//
// In the default at-least-once mode every Message handed out must be passed
// to Done exactly once, including duplicates the caller decides to skip:
// the committed offset never moves past a record that is not done. After a
// rebalance or restart, records handed out but not done are delivered again.
type Consumer struct {
	group string
	topic string
	opts  ConsumerOptions
	log   *zap.Logger
	// warn rate-limits the warnings that can come once per record or per broker error.
	warn *lograte.Limiter
	cg   sarama.ConsumerGroup

	out      chan *Message
	cancel   context.CancelFunc
	loop     sync.WaitGroup // the Consume loop, the committer and the error logger
	consumed chan struct{}  // closed when the Consume loop has returned

	// commitMu serialises commits so Done callers, claim goroutines and
	// Cleanup never flush the same session's offsets concurrently.
	commitMu sync.Mutex
	commitCh chan struct{} // wakes the committer; capacity 1

	mu    sync.Mutex
	sess  sarama.ConsumerGroupSession // current session; nil between sessions
	parts map[int32]*watermark        // partitions claimed in sess
	// marked is the offset last passed to sess.MarkOffset per partition, so
	// an unchanged watermark does not cause a commit round trip.
	marked map[int32]int64

	closeOnce sync.Once
	closeErr  error
}

// NewConsumer joins consumer group `group` on `topic` and starts delivering
// records on Messages. OpenWhisk uses the topic name as the group name
// (invoker0 reads invoker0 in group invoker0).
func NewConsumer(cfg Config, group, topic string, opts ConsumerOptions) (*Consumer, error) {
	if group == "" || topic == "" {
		return nil, fmt.Errorf("kafka: new consumer: group %q and topic %q must not be empty", group, topic)
	}
	if opts.Buffer < 0 {
		return nil, fmt.Errorf("kafka: new consumer for %q: negative buffer %d", topic, opts.Buffer)
	}
	if opts.FetchWait < 0 {
		return nil, fmt.Errorf("kafka: new consumer for %q: negative fetch wait %v", topic, opts.FetchWait)
	}
	sc := NewSaramaConfig(cfg)
	sc.Consumer.MaxWaitTime = opts.fetchWait()
	cg, err := sarama.NewConsumerGroup(cfg.Brokers, group, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka: join group %q on %v: %w", group, cfg.Brokers, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := cfg.logger().With(zap.String("group", group), zap.String("topic", topic))
	c := &Consumer{
		group:    group,
		topic:    topic,
		opts:     opts,
		log:      log,
		warn:     lograte.New(log, lograte.DefaultInterval),
		cg:       cg,
		out:      make(chan *Message, opts.Buffer),
		cancel:   cancel,
		commitCh: make(chan struct{}, 1),
		consumed: make(chan struct{}),
		parts:    map[int32]*watermark{},
		marked:   map[int32]int64{},
	}
	c.loop.Add(3)
	go c.consumeLoop(ctx)
	go c.logErrors()
	go c.committer(ctx)
	return c, nil
}

// Messages delivers the records. It is closed after Close.
func (c *Consumer) Messages() <-chan *Message { return c.out }

// Done marks m finished. In at-least-once mode the consumer then commits the
// highest offset below which every record is done. Done on a record from a
// partition this member no longer owns, or after Close, does nothing: that
// record will be (or was) delivered again to the partition's owner.
func (c *Consumer) Done(m *Message) {
	if m == nil || c.opts.AtMostOnce {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.parts[m.Partition]
	if w == nil || !w.done(m.Offset) {
		return
	}
	if c.markLocked(m.Partition, w) {
		select {
		case c.commitCh <- struct{}{}:
		default: // a commit is already due and will include this mark
		}
	}
}

// markLocked passes partition p's watermark to the session; it reports
// whether it moved, so the caller knows a commit is due. c.mu is held.
func (c *Consumer) markLocked(p int32, w *watermark) bool {
	off, ok := w.commit()
	if !ok || c.sess == nil {
		return false
	}
	if prev, seen := c.marked[p]; seen && off <= prev {
		return false
	}
	c.sess.MarkOffset(c.topic, p, off, "")
	c.marked[p] = off
	return true
}

// committer flushes marked offsets promptly, off the Done caller's path (a
// commit is a broker round trip). It lets the marks of commitLinger join one
// commit.
func (c *Consumer) committer(ctx context.Context) {
	defer c.loop.Done()
	linger := time.NewTimer(commitLinger)
	linger.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.commitCh:
		}
		linger.Reset(commitLinger)
		select {
		case <-ctx.Done():
			// Cleanup commits what is marked when the session ends.
			linger.Stop()
			return
		case <-linger.C:
		}
		c.mu.Lock()
		sess := c.sess
		c.mu.Unlock()
		if sess != nil {
			c.commit(sess)
		}
	}
}

// commit flushes sess's marked offsets. Failures reach the group's error
// channel and are logged there.
func (c *Consumer) commit(sess sarama.ConsumerGroupSession) {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	sess.Commit()
}

func (c *Consumer) consumeLoop(ctx context.Context) {
	defer c.loop.Done()
	defer close(c.consumed)
	defer close(c.out) // all claim goroutines have returned once Consume does
	backoff := retryBackoff
	for ctx.Err() == nil {
		// Consume returns at every rebalance; calling it again rejoins.
		err := c.cg.Consume(ctx, []string{c.topic}, (*groupHandler)(c))
		switch {
		case errors.Is(err, sarama.ErrClosedConsumerGroup):
			return
		case err == nil || ctx.Err() != nil:
			backoff = retryBackoff
		default:
			// A missing topic or an unreachable broker fails every call;
			// back off (up to maxRetryBackoff) so the log is not flooded.
			c.log.Warn("kafka consumer session failed; rejoining",
				zap.Duration("backoff", backoff), zap.Error(err))
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, maxRetryBackoff)
		}
	}
}

func (c *Consumer) logErrors() {
	defer c.loop.Done()
	for err := range c.cg.Errors() {
		c.warn.Warn("kafka consumer error", zap.Error(err))
	}
}

// Close stops consuming, commits what is done, leaves the group and closes
// Messages. Records handed out but not done are delivered again to the next
// member (at-least-once mode).
func (c *Consumer) Close() error {
	c.closeOnce.Do(func() {
		// Cancelling ends the session; Cleanup commits what is done before
		// Consume returns. Closing the group afterwards leaves it, so the
		// next member is assigned the partitions at once.
		c.cancel()
		<-c.consumed
		if err := c.cg.Close(); err != nil {
			c.closeErr = fmt.Errorf("kafka: close consumer group %q: %w", c.group, err)
		}
		c.loop.Wait()
		c.warn.Flush()
	})
	return c.closeErr
}

// groupHandler is the Consumer seen through sarama's handler interface, kept
// separate so Setup/Cleanup/ConsumeClaim are not part of Consumer's API.
type groupHandler Consumer

func (h *groupHandler) Setup(sess sarama.ConsumerGroupSession) error {
	c := (*Consumer)(h)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sess = sess
	c.parts = map[int32]*watermark{}
	c.marked = map[int32]int64{}
	for _, p := range sess.Claims()[c.topic] {
		c.parts[p] = newWatermark()
	}
	c.log.Info("kafka consumer joined",
		zap.String("member", sess.MemberID()), zap.Int32("generation", sess.GenerationID()),
		zap.Int32s("partitions", sess.Claims()[c.topic]))
	return nil
}

func (h *groupHandler) Cleanup(sess sarama.ConsumerGroupSession) error {
	c := (*Consumer)(h)
	c.mu.Lock()
	for p, w := range c.parts {
		c.markLocked(p, w)
	}
	c.sess = nil
	c.parts = map[int32]*watermark{}
	c.mu.Unlock()
	// Flush on rebalance and close: the next owner starts from here.
	c.commit(sess)
	return nil
}

func (h *groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	c := (*Consumer)(h)
	done := sess.Context().Done()
	for {
		var rec *sarama.ConsumerMessage
		select {
		case r, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			rec = r
		case <-done:
			return nil
		}
		m := &Message{
			Topic:     rec.Topic,
			Partition: rec.Partition,
			Offset:    rec.Offset,
			Value:     rec.Value,
			Timestamp: rec.Timestamp,
		}
		if c.opts.AtMostOnce {
			// OpenWhisk's order: commit, then process. A crash after this
			// point loses the record rather than running it twice.
			sess.MarkOffset(rec.Topic, rec.Partition, rec.Offset+1, "")
			c.commit(sess)
		} else {
			// Registered before the hand-off: if the session ends while
			// the send waits, the record stays unfinished and is not
			// committed past.
			c.mu.Lock()
			if w := c.parts[rec.Partition]; w != nil && !w.deliver(rec.Offset) {
				c.warn.Warn("kafka consumer: offset out of order; delivering anyway without tracking",
					zap.Int32("partition", rec.Partition), zap.Int64("offset", rec.Offset))
			}
			c.mu.Unlock()
		}
		select {
		case c.out <- m:
		case <-done:
			return nil
		}
	}
}
