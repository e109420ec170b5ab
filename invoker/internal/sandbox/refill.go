package sandbox

import (
	"context"
	"time"
)

// Backoff of a pool refiller after a failed create: it doubles from refillBackoffMin up to
// refillBackoffMax and starts again after a success, so a broken image neither spins nor stalls
// its pool for long once it is fixed.
const (
	refillBackoffMin = 100 * time.Millisecond
	refillBackoffMax = 10 * time.Second
)

// Refill keeps a pool of created sandboxes full: it creates one whenever ready has room (blocking
// while it is full) until ctx ends. A failed create is reported to failed (unless ctx ended) and
// retried after a backoff. before, when set, runs ahead of every create (a backend adjusts the
// refill's priority there). An item created when ctx has ended is discarded.
func Refill[T any](ctx context.Context, ready chan<- T, create func() (T, error), discard func(T),
	failed func(error), before func()) {
	backoff := refillBackoffMin
	for {
		if before != nil {
			before()
		}
		item, err := create()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failed(err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, refillBackoffMax)
			continue
		}
		backoff = refillBackoffMin
		select {
		case ready <- item:
		case <-ctx.Done():
			discard(item)
			return
		}
	}
}
