package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap/zaptest"
)

// waitFor bounds every wait on the broker; tests finish far sooner.
const waitFor = 10 * time.Second

func startBroker(t *testing.T, opts EmbeddedOptions) *Embedded {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t)
	}
	e, err := StartEmbedded(opts)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

func testConfig(t *testing.T, e *Embedded) Config {
	return Config{Brokers: e.Addrs(), ClientID: "test-" + t.Name(), Logger: zaptest.NewLogger(t)}
}

func newProducer(t *testing.T, cfg Config) *Producer {
	t.Helper()
	p, err := NewProducer(cfg)
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func newConsumer(t *testing.T, cfg Config, group, topic string, opts ConsumerOptions) *Consumer {
	t.Helper()
	c, err := NewConsumer(cfg, group, topic, opts)
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func send(t *testing.T, p *Producer, topic string, values ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for _, v := range values {
		if err := p.Send(ctx, topic, []byte(v)); err != nil {
			t.Fatalf("Send(%q): %v", v, err)
		}
	}
}

func receive(t *testing.T, c *Consumer, n int) []*Message {
	t.Helper()
	var got []*Message
	timeout := time.After(waitFor)
	for len(got) < n {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				t.Fatalf("Messages closed after %d of %d records", len(got), n)
			}
			got = append(got, m)
		case <-timeout:
			t.Fatalf("received %d of %d records in %v", len(got), n, waitFor)
		}
	}
	return got
}

func values(ms []*Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, string(m.Value))
	}
	return out
}

func offsets(ms []*Message) []int64 {
	var out []int64
	for _, m := range ms {
		out = append(out, m.Offset)
	}
	return out
}

func closeConsumer(t *testing.T, c *Consumer) {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Fatalf("Consumer.Close: %v", err)
	}
}

func TestTopicNames(t *testing.T) {
	if got := InvokerTopic(0); got != "invoker0" {
		t.Errorf("InvokerTopic(0) = %q", got)
	}
	if got := InvokerTopic(12); got != "invoker12" {
		t.Errorf("InvokerTopic(12) = %q", got)
	}
	if got := CompletedTopic("0"); got != "completed0" {
		t.Errorf("CompletedTopic(0) = %q", got)
	}
	if MaxMessageBytes != 1054644 {
		t.Errorf("MaxMessageBytes = %d", MaxMessageBytes)
	}
}

func TestRoundTrip(t *testing.T) {
	e := startBroker(t, EmbeddedOptions{})
	cfg := testConfig(t, e)
	topic := InvokerTopic(0)
	p := newProducer(t, cfg)
	send(t, p, topic, "a", "b", "c")

	c := newConsumer(t, cfg, topic, topic, ConsumerOptions{})
	got := receive(t, c, 3)
	if fmt.Sprint(values(got)) != "[a b c]" || fmt.Sprint(offsets(got)) != "[0 1 2]" {
		t.Fatalf("got values %v offsets %v", values(got), offsets(got))
	}
	for _, m := range got {
		if m.Topic != topic || m.Partition != 0 || m.Timestamp.IsZero() {
			t.Fatalf("bad record metadata: %+v", m)
		}
		c.Done(m)
	}
	// A record produced while the consumer is running arrives too.
	send(t, p, topic, "d")
	if got := receive(t, c, 1); string(got[0].Value) != "d" || got[0].Offset != 3 {
		t.Fatalf("live record: %+v", got[0])
	}
	closeConsumer(t, c)
	if _, ok := <-c.Messages(); ok {
		t.Fatal("Messages still open after Close")
	}
}

func TestMessageTooLarge(t *testing.T) {
	e := startBroker(t, EmbeddedOptions{})
	cfg := testConfig(t, e)
	topic := InvokerTopic(0)
	p := newProducer(t, cfg)
	ctx := context.Background()

	err := p.Send(ctx, topic, make([]byte, MaxMessageBytes+1))
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("Send(MaxMessageBytes+1) = %v, want ErrMessageTooLarge", err)
	}

	// The largest value the producer accepts: the record's framing counts.
	big := bytes.Repeat([]byte("x"), MaxMessageBytes-64)
	if err := p.Send(ctx, topic, big); err != nil {
		t.Fatalf("Send(just under the limit): %v", err)
	}
	c := newConsumer(t, cfg, topic, topic, ConsumerOptions{})
	if got := receive(t, c, 1); !bytes.Equal(got[0].Value, big) {
		t.Fatalf("large record came back with %d bytes, want %d", len(got[0].Value), len(big))
	}

	// The broker's own limit (the topic's max.message.bytes) maps to the
	// same error, so the caller's shrink-and-resend path works with either.
	if err := EnsureTopic(ctx, cfg, "small", 1, 1000); err != nil {
		t.Fatalf("EnsureTopic: %v", err)
	}
	err = p.Send(ctx, "small", make([]byte, 2000))
	if !errors.Is(err, ErrMessageTooLarge) || !errors.Is(err, sarama.ErrMessageSizeTooLarge) {
		t.Fatalf("Send over the topic limit = %v, want ErrMessageTooLarge from the broker", err)
	}
	if err := p.Send(ctx, "small", make([]byte, 500)); err != nil {
		t.Fatalf("Send under the topic limit: %v", err)
	}
}

func TestProducerClosed(t *testing.T) {
	e := startBroker(t, EmbeddedOptions{})
	p, err := NewProducer(testConfig(t, e))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := p.Send(context.Background(), "t", []byte("x")); !errors.Is(err, ErrProducerClosed) {
		t.Fatalf("Send after Close = %v, want ErrProducerClosed", err)
	}
}

func TestNewClientsRejectBadInput(t *testing.T) {
	if _, err := NewProducer(Config{}); err == nil {
		t.Error("NewProducer without brokers succeeded")
	}
	e := startBroker(t, EmbeddedOptions{})
	cfg := testConfig(t, e)
	if _, err := NewConsumer(cfg, "", "invoker0", ConsumerOptions{}); err == nil {
		t.Error("NewConsumer with empty group succeeded")
	}
	if _, err := NewConsumer(cfg, "g", "", ConsumerOptions{}); err == nil {
		t.Error("NewConsumer with empty topic succeeded")
	}
	if _, err := NewConsumer(cfg, "g", "t", ConsumerOptions{Buffer: -1}); err == nil {
		t.Error("NewConsumer with negative buffer succeeded")
	}
	if _, err := NewConsumer(cfg, "g", "t", ConsumerOptions{FetchWait: -time.Second}); err == nil {
		t.Error("NewConsumer with a negative fetch wait succeeded")
	}
}

// committedOffset reads the group's committed offset for partition 0.
func committedOffset(t *testing.T, cfg Config, group, topic string) int64 {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(cfg.Brokers, NewSaramaConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0}})
	if err != nil {
		t.Fatal(err)
	}
	b := resp.GetBlock(topic, 0)
	if b == nil {
		return -1
	}
	return b.Offset
}

func TestAtLeastOnceRedeliversUnfinished(t *testing.T) {
	e := startBroker(t, EmbeddedOptions{})
	cfg := testConfig(t, e)
	topic := InvokerTopic(0)
	p := newProducer(t, cfg)
	send(t, p, topic, "m0", "m1", "m2", "m3", "m4")

	c1 := newConsumer(t, cfg, topic, topic, ConsumerOptions{})
	got := receive(t, c1, 5)
	// Finish out of order and leave m2 running.
	for _, i := range []int{4, 0, 3, 1} {
		c1.Done(got[i])
	}
	// The watermark (2) is committed promptly, without waiting for Close.
	deadline := time.Now().Add(waitFor)
	for committedOffset(t, cfg, topic, topic) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("committed offset = %d, want 2", committedOffset(t, cfg, topic, topic))
		}
		time.Sleep(20 * time.Millisecond)
	}
	closeConsumer(t, c1)
	if off := committedOffset(t, cfg, topic, topic); off != 2 {
		t.Fatalf("committed offset after Close = %d, want 2", off)
	}
	// Done after Close is harmless and commits nothing.
	c1.Done(got[2])

	c2 := newConsumer(t, cfg, topic, topic, ConsumerOptions{})
	again := receive(t, c2, 3)
	if fmt.Sprint(values(again)) != "[m2 m3 m4]" || fmt.Sprint(offsets(again)) != "[2 3 4]" {
		t.Fatalf("redelivered %v at %v, want [m2 m3 m4] at [2 3 4]", values(again), offsets(again))
	}
	for _, m := range again {
		c2.Done(m)
	}
	closeConsumer(t, c2)
	if off := committedOffset(t, cfg, topic, topic); off != 5 {
		t.Fatalf("committed offset = %d, want 5", off)
	}
}

func TestAtMostOnceDoesNotRedeliver(t *testing.T) {
	e := startBroker(t, EmbeddedOptions{})
	cfg := testConfig(t, e)
	topic := InvokerTopic(0)
	p := newProducer(t, cfg)
	send(t, p, topic, "m0", "m1", "m2", "m3", "m4")

	c1 := newConsumer(t, cfg, topic, topic, ConsumerOptions{AtMostOnce: true})
	got := receive(t, c1, 5)
	c1.Done(got[0]) // a no-op in this mode; the others are never finished
	closeConsumer(t, c1)

	send(t, p, topic, "after")
	c2 := newConsumer(t, cfg, topic, topic, ConsumerOptions{AtMostOnce: true})
	next := receive(t, c2, 1)
	if string(next[0].Value) != "after" || next[0].Offset != 5 {
		t.Fatalf("first record after restart = %q at %d, want \"after\" at 5", next[0].Value, next[0].Offset)
	}
}

func TestEmbeddedRestartKeepsOffsetsAndRecords(t *testing.T) {
	dir := t.TempDir()
	topic := InvokerTopic(0)
	log := zaptest.NewLogger(t)

	e1, err := StartEmbedded(EmbeddedOptions{DataDir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, e1)
	p := newProducer(t, cfg)
	send(t, p, topic, "r0", "r1", "r2")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	c1 := newConsumer(t, cfg, topic, topic, ConsumerOptions{})
	got := receive(t, c1, 3)
	c1.Done(got[0])
	closeConsumer(t, c1)
	e1.Close()

	e2 := startBroker(t, EmbeddedOptions{DataDir: dir, Logger: log})
	cfg2 := testConfig(t, e2)
	c2 := newConsumer(t, cfg2, topic, topic, ConsumerOptions{})
	again := receive(t, c2, 2)
	if fmt.Sprint(values(again)) != "[r1 r2]" || fmt.Sprint(offsets(again)) != "[1 2]" {
		t.Fatalf("after restart got %v at %v, want [r1 r2] at [1 2]", values(again), offsets(again))
	}
	// The restarted broker keeps appending after the restored log.
	p2 := newProducer(t, cfg2)
	send(t, p2, topic, "r3")
	if m := receive(t, c2, 1)[0]; string(m.Value) != "r3" || m.Offset != 3 {
		t.Fatalf("new record after restart = %q at %d, want r3 at 3", m.Value, m.Offset)
	}
}

func TestEmbeddedFixedPortAndBadAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	e := startBroker(t, EmbeddedOptions{Addr: addr})
	if got := e.Addrs(); len(got) != 1 || got[0] != addr {
		t.Fatalf("Addrs() = %v, want [%s]", got, addr)
	}
	send(t, newProducer(t, testConfig(t, e)), "t", "x")

	for _, bad := range []string{"0.0.0.0:0", "localhost:0", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:x"} {
		if e, err := StartEmbedded(EmbeddedOptions{Addr: bad}); err == nil {
			e.Close()
			t.Errorf("StartEmbedded(%q) succeeded", bad)
		}
	}
}

func TestEnsureTopicIdempotent(t *testing.T) {
	e := startBroker(t, EmbeddedOptions{})
	cfg := testConfig(t, e)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := EnsureTopic(ctx, cfg, "invoker7", 3, MaxMessageBytes); err != nil {
			t.Fatalf("EnsureTopic #%d: %v", i+1, err)
		}
	}
	// A topic auto-created with broker defaults gets the limit set.
	send(t, newProducer(t, cfg), "auto", "x")
	if err := EnsureTopic(ctx, cfg, "auto", 1, 4096); err != nil {
		t.Fatalf("EnsureTopic on an auto-created topic: %v", err)
	}

	admin, err := sarama.NewClusterAdmin(cfg.Brokers, NewSaramaConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	meta, err := admin.DescribeTopics([]string{"invoker7"})
	if err != nil || len(meta) != 1 || len(meta[0].Partitions) != 3 {
		t.Fatalf("DescribeTopics = %+v, %v; want 3 partitions", meta, err)
	}
	for topic, want := range map[string]string{"invoker7": strconv.Itoa(MaxMessageBytes), "auto": "4096"} {
		//nolint:staticcheck // DescribeConfig reads one topic's entry, all this test needs
		entries, err := admin.DescribeConfig(sarama.ConfigResource{
			Type: sarama.TopicResource, Name: topic, ConfigNames: []string{"max.message.bytes"},
		})
		if err != nil {
			t.Fatalf("DescribeConfig(%s): %v", topic, err)
		}
		if len(entries) != 1 || entries[0].Value != want {
			t.Fatalf("%s max.message.bytes = %+v, want %s", topic, entries, want)
		}
	}

	for _, bad := range []struct {
		topic string
		parts int32
		max   int
	}{{"", 1, 1}, {"t", 0, 1}, {"t", 1, 0}} {
		if err := EnsureTopic(ctx, cfg, bad.topic, bad.parts, bad.max); err == nil {
			t.Errorf("EnsureTopic(%q, %d, %d) succeeded", bad.topic, bad.parts, bad.max)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := EnsureTopic(cancelled, cfg, "t", 1, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("EnsureTopic with a cancelled context = %v", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestConsumerSurvivesBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	topic := InvokerTopic(0)
	log := zaptest.NewLogger(t)

	e1, err := StartEmbedded(EmbeddedOptions{DataDir: dir, Addr: addr, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, e1)
	p := newProducer(t, cfg)
	send(t, p, topic, "before")
	c := newConsumer(t, cfg, topic, topic, ConsumerOptions{})
	c.Done(receive(t, c, 1)[0])

	e1.Close()
	startBroker(t, EmbeddedOptions{DataDir: dir, Addr: addr, Logger: log})

	// The same producer and consumer carry on once the broker is back.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for {
		err := p.Send(ctx, topic, []byte("after"))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Send after broker restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	m := receive(t, c, 1)[0]
	if string(m.Value) != "after" || m.Offset != 1 {
		t.Fatalf("after broker restart got %q at %d, want \"after\" at 1", m.Value, m.Offset)
	}
}

func TestRebalanceSharesPartitions(t *testing.T) {
	e := startBroker(t, EmbeddedOptions{})
	cfg := testConfig(t, e)
	ctx := context.Background()
	if err := EnsureTopic(ctx, cfg, "shared", 2, MaxMessageBytes); err != nil {
		t.Fatal(err)
	}
	a := newConsumer(t, cfg, "g", "shared", ConsumerOptions{})
	p := newProducer(t, cfg)
	send(t, p, "shared", "1", "2", "3", "4")
	for _, m := range receive(t, a, 4) {
		a.Done(m)
	}
	b := newConsumer(t, cfg, "g", "shared", ConsumerOptions{})

	// After the rebalance each member owns one partition, so new records
	// reach both members and none of the finished ones comes back.
	got := map[*Consumer]bool{}
	take := func(c *Consumer, m *Message) {
		if len(m.Value) == 1 {
			t.Fatalf("finished record %q redelivered after rebalance", m.Value)
		}
		got[c] = true
		c.Done(m)
	}
	deadline := time.Now().Add(waitFor)
	for n := 0; !got[a] || !got[b]; n++ {
		if time.Now().After(deadline) {
			t.Fatalf("after rebalance: a received %v, b received %v", got[a], got[b])
		}
		send(t, p, "shared", "x"+strconv.Itoa(n))
		select {
		case m := <-a.Messages():
			take(a, m)
		case m := <-b.Messages():
			take(b, m)
		case <-time.After(time.Second):
		}
	}
}

// answerProduce answers every partition of a produce request with code.
func answerProduce(kreq kmsg.Request, code int16) kmsg.Response {
	req := kreq.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// A produce the leader refuses as no longer its own, and one whose connection the broker closes,
// are sent again (after a metadata refresh, on a new connection): the record is written once.
// An error no retry can mend fails the Send at once.
func TestProducerRetriesALostLeaderAndABrokenConnection(t *testing.T) {
	e := startBroker(t, EmbeddedOptions{})
	cfg := testConfig(t, e)
	p := newProducer(t, cfg)
	topic := InvokerTopic(0)
	send(t, p, topic, "first")

	var intercepted atomic.Int32
	e.cluster.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		intercepted.Add(1)
		return answerProduce(kreq, kerr.NotLeaderForPartition.Code), nil, true
	})
	e.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		intercepted.Add(1)
		return nil, errors.New("the test drops the connection"), true
	})
	send(t, p, topic, "second")
	if n := intercepted.Load(); n != 2 {
		t.Fatalf("the broker saw %d intercepted produce requests, want 2 (a refusal and a dropped connection)", n)
	}

	e.cluster.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		intercepted.Add(1)
		return answerProduce(kreq, kerr.TopicAuthorizationFailed.Code), nil, true
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	err := p.Send(ctx, topic, []byte("refused"))
	if !errors.Is(err, sarama.ErrTopicAuthorizationFailed) {
		t.Fatalf("Send to a topic the broker refuses = %v, want ErrTopicAuthorizationFailed", err)
	}
	if n := intercepted.Load(); n != 3 {
		t.Fatalf("a refusal no retry can mend was sent %d times, want once", n-2)
	}

	send(t, p, topic, "third")
	c := newConsumer(t, cfg, topic, topic, ConsumerOptions{})
	got := receive(t, c, 3)
	if fmt.Sprint(values(got)) != "[first second third]" || fmt.Sprint(offsets(got)) != "[0 1 2]" {
		t.Fatalf("the topic holds %v at %v, want [first second third] at [0 1 2]", values(got), offsets(got))
	}
}

// A Send whose context ends before the broker answers returns the context's error at once.
func TestProducerSendHonoursItsContext(t *testing.T) {
	e := startBroker(t, EmbeddedOptions{})
	cfg := testConfig(t, e)
	p := newProducer(t, cfg)
	topic := InvokerTopic(0)
	send(t, p, topic, "first")
	e.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		return nil, nil, true // read and never answered
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Send(ctx, topic, []byte("unanswered"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send to a broker that does not answer = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Send returned %v after its context ended", d)
	}
}
