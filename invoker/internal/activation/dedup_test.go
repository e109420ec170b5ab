package activation

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestDedup_RepeatedDeliveryGetsSameAcks(t *testing.T) {
	d := NewDedup(2)
	first, _ := d.Begin("a")
	if !first {
		t.Fatal("first delivery not recognised")
	}
	again, wait := d.Begin("a")
	if again {
		t.Fatal("repeated delivery treated as first")
	}
	got := make(chan []SentAck, 1)
	go func() {
		acks, ok := wait(nil)
		if !ok {
			t.Error("wait cancelled")
		}
		got <- acks
	}()
	select {
	case <-got:
		t.Fatal("repeated delivery answered before the first finished")
	case <-time.After(20 * time.Millisecond):
	}
	d.Finish("a", []SentAck{{Topic: "completed0", Value: []byte("x")}})
	acks := <-got
	if len(acks) != 1 || string(acks[0].Value) != "x" {
		t.Fatalf("acks = %+v", acks)
	}
}

func TestDedup_EvictsOldestAnswered(t *testing.T) {
	d := NewDedup(2)
	for _, id := range []string{"a", "b", "c"} {
		d.Begin(id)
		d.Finish(id, nil)
	}
	if first, _ := d.Begin("a"); !first {
		t.Fatal("oldest id should have been evicted")
	}
	if first, _ := d.Begin("c"); first {
		t.Fatal("newest id should be remembered")
	}
}

func TestMemoryPool_FIFOAndCancel(t *testing.T) {
	p := NewMemoryPool(256)
	ctx := context.Background()
	if err := p.Acquire(ctx, 256); err != nil {
		t.Fatal(err)
	}
	if err := p.Acquire(ctx, 512); err == nil {
		t.Fatal("a request above the pool size must fail at once")
	}
	var order []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 1; i <= 2; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := p.Acquire(ctx, 128); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}(i)
		time.Sleep(10 * time.Millisecond) // make arrival order deterministic
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := p.Acquire(cctx, 128); err == nil {
		t.Fatal("cancelled acquire succeeded")
	}
	p.Release(128)
	time.Sleep(20 * time.Millisecond)
	mu.Lock()
	if len(order) != 1 || order[0] != 1 {
		t.Fatalf("after releasing 128 MB: granted %v, want only the first waiter", order)
	}
	mu.Unlock()
	p.Release(128)
	wg.Wait()
	if p.Free() != 0 {
		t.Fatalf("free = %d", p.Free())
	}
}
