package kafka

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
)

// BenchmarkHop measures one hop as the invoker sees it: a record sent by one client until it
// comes out of another's consumer, over TCP to the embedded broker.
//
//	go test -run '^$' -bench Hop ./invoker/kafka/
func BenchmarkHop(b *testing.B) {
	e, err := StartEmbedded(EmbeddedOptions{Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	cfg := Config{Brokers: e.Addrs(), ClientID: "bench", Logger: zap.NewNop()}
	p, err := NewProducer(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	topic := InvokerTopic(0)
	ctx := context.Background()
	if err := p.Send(ctx, topic, []byte("warm")); err != nil {
		b.Fatal(err)
	}
	c, err := NewConsumer(cfg, topic, topic, ConsumerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.Done(<-c.Messages())
	var send, hop time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Spaced like activations, so each record meets a parked fetch.
		time.Sleep(2 * time.Millisecond)
		t0 := time.Now()
		if err := p.Send(ctx, topic, []byte("x")); err != nil {
			b.Fatal(err)
		}
		send += time.Since(t0)
		m := <-c.Messages()
		hop += time.Since(t0)
		c.Done(m)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(send.Microseconds())/float64(b.N), "send_us")
	b.ReportMetric(float64(hop.Microseconds())/float64(b.N), "hop_us")
}
