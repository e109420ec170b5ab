package feed

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/teemate/platform/invoker/kafka"
	"github.com/teemate/platform/invoker/whisk"
)

// Sender puts a record on a topic (kafka.Producer).
type Sender interface {
	Send(ctx context.Context, topic string, value []byte) error
}

// Pinger sends PingMessages to the health topic: every Interval while enabled, and one with
// isEnabled:false when the invoker is disabled or shuts down, as OpenWhisk's invoker does.
type Pinger struct {
	Sender   Sender
	Instance whisk.InvokerInstanceID
	Interval time.Duration
	Enabled  func() bool
	// Warm, when set, lists the images warm on this invoker for the pings (PingMessage.Warm). It
	// is called once per ping and must return quickly.
	Warm func() []whisk.WarmImage
	// OnError and OnSent observe outcomes (logging and metrics); both optional.
	OnError func(error)
	OnSent  func()

	mu sync.Mutex // orders Run's pings with Announce's
}

// Ping sends one ping now.
func (p *Pinger) Ping(ctx context.Context, enabled bool) error {
	msg := whisk.PingMessage{Name: p.Instance, IsEnabled: enabled}
	if p.Warm != nil {
		msg.Warm = p.Warm()
	}
	v, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("encode ping: %w", err)
	}
	if err := p.Sender.Send(ctx, kafka.HealthTopic, v); err != nil {
		return fmt.Errorf("send ping: %w", err)
	}
	if p.OnSent != nil {
		p.OnSent()
	}
	return nil
}

// Announce sends one ping with the state Enabled reports now, ordered with Run's: a ping Run
// made from the state before a change cannot go out after it, so the last ping the controllers
// get says what was set last.
func (p *Pinger) Announce(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Ping(ctx, p.Enabled())
}

// Run pings until ctx ends. A change to disabled sends one disabled ping; while disabled no pings go
// out; a change back to enabled pings at once.
func (p *Pinger) Run(ctx context.Context) {
	interval := p.Interval
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	wasEnabled := false
	first := true
	for {
		p.mu.Lock()
		on := p.Enabled()
		switch {
		case on:
			p.report(p.Ping(ctx, true))
		case first || wasEnabled:
			p.report(p.Ping(ctx, false))
		}
		p.mu.Unlock()
		wasEnabled, first = on, false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Pinger) report(err error) {
	if err != nil && p.OnError != nil {
		p.OnError(err)
	}
}
