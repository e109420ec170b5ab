package balancer

import (
	"bytes"
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/teemate/platform/invoker/daemon"
	"github.com/teemate/platform/invoker/kafka"
	"github.com/teemate/platform/invoker/whisk"
)

// TestRealInvokerAnswersTheHealthTestAction runs the real invoker (invoker/daemon) against the
// balancer over the embedded broker. With no executor and no REST API to fetch the test action
// from, the invoker answers with a whisk error: the invoker must show up through its pings, the
// test action's ack must come back with the balancer's own transid byte for byte, and it must
// count as a system error (so the invoker stays unhealthy). The app package's standalone test
// shows the same invoker turning healthy once it can run the action.
func TestRealInvokerAnswersTheHealthTestAction(t *testing.T) {
	f := newFixture(t, nil)
	log := zaptest.NewLogger(t)

	// An observer of completed0 in its own group sees exactly what the invoker sent.
	observer, err := kafka.NewConsumer(f.kcfg, "observer", kafka.CompletedTopic("0"), kafka.ConsumerOptions{AtMostOnce: true})
	if err != nil {
		t.Fatalf("observer: %v", err)
	}
	defer observer.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, daemon.Config{
			ID: 0, Kafka: f.kcfg.Brokers[0], APIHost: "http://127.0.0.1:1", Listen: "-",
			StateDir: t.TempDir(), PingInterval: 200 * time.Millisecond, UserMemoryMB: 1024,
			DrainTimeout: 5 * time.Second, Logger: log.Named("invoker"),
		})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("daemon.Run: %v", err)
			}
		case <-time.After(waitFor):
			t.Error("the invoker did not stop")
		}
	}()

	f.waitState(t, 0, "unhealthy")
	if got := f.bal.Invokers(); len(got) != 1 || got[0].Name != "invoker0/0/invoker0" {
		t.Fatalf("Invokers() = %+v, want the invoker's own id", got)
	}

	want := f.bal.HealthTransactionID()
	deadline := time.After(waitFor)
	for {
		select {
		case m := <-observer.Messages():
			ack, err := whisk.ParseAcknowledgement(m.Value)
			if err != nil {
				t.Fatalf("the invoker sent a malformed ack: %v", err)
			}
			if !ack.Transaction().Equal(want) || !bytes.Equal(ack.Transaction().Raw(), want.Raw()) {
				t.Fatalf("ack transid %s, want the health transid %s", ack.Transaction().Raw(), want.Raw())
			}
			if sys, _ := ack.SystemError(); !sys || ack.SlotFree() == nil {
				t.Fatalf("ack %s: want a slot-freeing whisk error", m.Value)
			}
			eventually(t, "the system error in the health buffer", func() bool {
				f.bal.mu.Lock()
				defer f.bal.mu.Unlock()
				buf := f.bal.invokers[0].health.Buffer()
				return len(buf) > 0 && buf[0] == SystemError
			})
			if s := f.state(0); s != "unhealthy" {
				t.Fatalf("state after a failed test = %s, want unhealthy", s)
			}
			return
		case <-deadline:
			t.Fatalf("no ack from the invoker in %v", waitFor)
		}
	}
}
