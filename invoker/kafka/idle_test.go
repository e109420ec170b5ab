package kafka

import (
	"testing"
	"time"

	"github.com/rcrowley/go-metrics"
)

// TestConsumer_IdleCPU: an idle consumer and its broker in this process spend little CPU. A fetch
// the broker holds is answered when a record comes, so only the wait bounds how often an idle
// consumer polls: at a 5 ms wait this test measured about 90 ms of CPU per idle second, at the
// 500 ms default about 3 ms (heartbeats included).
func TestConsumer_IdleCPU(t *testing.T) {
	e := startBroker(t, EmbeddedOptions{})
	cfg := testConfig(t, e)
	p := newProducer(t, cfg)
	topic := InvokerTopic(0)
	send(t, p, topic, "warm")
	c := newConsumer(t, cfg, topic, topic, ConsumerOptions{})
	for _, m := range receive(t, c, 1) {
		c.Done(m)
	}
	time.Sleep(500 * time.Millisecond) // the join's and the first commit's traffic ends
	const idle = 2 * time.Second
	before := processCPU(t)
	time.Sleep(idle)
	perSecond := (processCPU(t) - before) * time.Second / idle
	t.Logf("idle: %v of CPU per second", perSecond)
	// Generous for a loaded machine, and still well under a consumer polling every few ms.
	if perSecond > 30*time.Millisecond {
		t.Errorf("an idle consumer and broker spend %v of CPU per second, want under 30ms", perSecond)
	}
	// A record still comes at once, not after the held fetch's wait.
	t0 := time.Now()
	send(t, p, topic, "x")
	m := receive(t, c, 1)[0]
	c.Done(m)
	if d := time.Since(t0); d > idleFetchWait/2 {
		t.Errorf("a record after an idle period took %v, want well under the fetch wait %v", d, idleFetchWait)
	}
}

// TestConsumer_AtMostOnceHandsOutPromptly: the at-most-once consumer commits before each hand-out,
// and that commit queues behind the fetch sarama sends right after the record; its short default
// wait keeps the hand-out prompt.
func TestConsumer_AtMostOnceHandsOutPromptly(t *testing.T) {
	e := startBroker(t, EmbeddedOptions{})
	cfg := testConfig(t, e)
	p := newProducer(t, cfg)
	topic := InvokerTopic(0)
	send(t, p, topic, "warm")
	c := newConsumer(t, cfg, topic, topic, ConsumerOptions{AtMostOnce: true})
	receive(t, c, 1)
	var worst time.Duration
	for i := 0; i < 5; i++ {
		time.Sleep(20 * time.Millisecond)
		t0 := time.Now()
		send(t, p, topic, "x")
		receive(t, c, 1)
		worst = max(worst, time.Since(t0))
	}
	if worst > idleFetchWait/2 {
		t.Errorf("at most once: the slowest of 5 records took %v, want well under %v", worst, idleFetchWait)
	}
}

func TestDiscardMetrics_AnswersWhatSaramaAsserts(t *testing.T) {
	r := discardMetrics{}
	if _, ok := metrics.GetOrRegisterMeter("m", r).(metrics.NilMeter); !ok {
		t.Error("a meter is not the no-op meter")
	}
	if _, ok := metrics.GetOrRegisterCounter("c", r).(metrics.NilCounter); !ok {
		t.Error("a counter is not the no-op counter")
	}
	h := r.GetOrRegister("h", func() metrics.Histogram { return metrics.NewHistogram(metrics.NewUniformSample(1)) })
	if _, ok := h.(metrics.NilHistogram); !ok {
		t.Errorf("a histogram is %T, not the no-op histogram", h)
	}
	g := r.GetOrRegister("g", metrics.NewGauge)
	if _, ok := g.(metrics.Gauge); !ok {
		t.Errorf("another kind by constructor is %T, not what the constructor makes", g)
	}
	if r.Get("m") != nil {
		t.Error("the registry kept a metric")
	}
}
