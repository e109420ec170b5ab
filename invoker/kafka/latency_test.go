package kafka

import (
	"context"
	"syscall"
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
	cpu0 := processCPU(b)
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
	b.StopTimer()
	// The process's CPU (broker, producer and consumer), idle gaps included: a fetch loop that
	// polls an idle partition shows here, not in the hop time.
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu_us")
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(send.Microseconds())/float64(b.N), "send_us")
	b.ReportMetric(float64(hop.Microseconds())/float64(b.N), "hop_us")
}

// processCPU is the CPU time this process has used so far (user + system).
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
