package sandbox

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestRefill(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan int, 2)
	var mu sync.Mutex
	var failures []error
	var discarded []int
	n, befores := 0, 0
	create := func() (int, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n == 2 {
			return 0, errors.New("engine hiccup")
		}
		return n, nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Refill(ctx, ready, create,
			func(i int) { mu.Lock(); discarded = append(discarded, i); mu.Unlock() },
			func(err error) { mu.Lock(); failures = append(failures, err); mu.Unlock() },
			func() { mu.Lock(); befores++; mu.Unlock() })
	}()
	// The failed second create is retried after the backoff; the pool fills with 1 and 3.
	if a, b := <-ready, <-ready; a != 1 || b != 3 {
		t.Fatalf("pool got %d and %d, want 1 and 3", a, b)
	}
	// A taken item is replaced; with the pool full, the next item waits and is discarded at the end.
	if got := <-ready; got != 4 {
		t.Fatalf("refill after a take: %d, want 4", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		waiting := n >= 7 // 5 and 6 fill the pool again, 7 is created and waits for room
		mu.Unlock()
		if waiting || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(failures) != 1 || len(discarded) != 1 || discarded[0] != 7 || befores != n {
		t.Fatalf("failures %v, discarded %v, before %d times for %d creates", failures, discarded, befores, n)
	}
}

func TestRefillStopsQuietlyWhenCreateFailsAtShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	create := func() (int, error) { cancel(); return 0, context.Canceled }
	failed := func(err error) { t.Errorf("a failure at shutdown was reported: %v", err) }
	Refill(ctx, make(chan int), create, func(int) {}, failed, nil)
}
