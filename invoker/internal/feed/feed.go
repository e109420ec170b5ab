// Package feed pulls ActivationMessages off the invoker's Kafka topic with a bounded number in
// flight (OpenWhisk's MessageFeed and maxPeek), hands each to the activation pipeline on its own
// goroutine, and marks the record done once the pipeline has answered it, so offsets are committed
// only behind answered work. It also sends the health pings. It runs on the untrusted host.
package feed

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/teemate/platform/invoker/kafka"
)

// Source is the consumer the feed reads (kafka.Consumer).
type Source interface {
	Messages() <-chan *kafka.Message
	Done(m *kafka.Message)
}

// Handle processes one record and returns once it is answered.
type Handle func(ctx context.Context, value []byte)

// Feed is the pull loop. Disable may be called from any goroutine.
type Feed struct {
	src     Source
	handle  Handle
	tokens  chan struct{}
	running atomic.Int64
	wg      sync.WaitGroup
	mu      sync.Mutex
	enabled bool
	wake    chan struct{} // closed and replaced whenever enabled changes
}

// New creates a feed holding at most maxPeek records in flight.
func New(src Source, handle Handle, maxPeek int) *Feed {
	if maxPeek < 1 {
		maxPeek = 1
	}
	return &Feed{src: src, handle: handle, tokens: make(chan struct{}, maxPeek), enabled: true, wake: make(chan struct{})}
}

// Disable stops taking new work for good (the invoker's shutdown; its /disable only stops the
// pings); in-flight activations finish.
func (f *Feed) Disable() { f.set(false) }

func (f *Feed) set(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.enabled == on {
		return
	}
	f.enabled = on
	close(f.wake)
	f.wake = make(chan struct{})
}

func (f *Feed) state() (bool, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.enabled, f.wake
}

// Run pulls records until stop is closed or the source closes, then waits for the in-flight ones.
// work is the context handed to the pipeline: it outlives stop so that a graceful shutdown finishes
// what it took; cancel it to abandon in-flight work.
func (f *Feed) Run(stop <-chan struct{}, work context.Context) {
	defer f.wg.Wait()
	for {
		on, wake := f.state()
		if !on {
			select {
			case <-wake:
				continue
			case <-stop:
				return
			}
		}
		select {
		case f.tokens <- struct{}{}:
		case <-wake:
			continue
		case <-stop:
			return
		}
		var m *kafka.Message
		var ok bool
		select {
		case m, ok = <-f.src.Messages():
		case <-wake:
			<-f.tokens
			continue
		case <-stop:
			<-f.tokens
			return
		}
		if !ok {
			<-f.tokens
			return
		}
		f.wg.Add(1)
		f.running.Add(1)
		go func() {
			defer f.wg.Done()
			defer func() { f.running.Add(-1); <-f.tokens }()
			f.handle(work, m.Value)
			f.src.Done(m)
		}()
	}
}

// InFlight is the number of records being handled (a token held while waiting for a record is not).
func (f *Feed) InFlight() int { return int(f.running.Load()) }
