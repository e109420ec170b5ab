package activation

import (
	"context"
	"fmt"
	"sync"
)

// MemoryPool is the invoker's user memory, handed out in MB to running activations in arrival order
// (OpenWhisk's ContainerPool keeps the same in-order runBuffer). A request larger than the whole pool
// can never run and fails at once.
type MemoryPool struct {
	mu      sync.Mutex
	total   int
	free    int
	waiters []*memWaiter
}

type memWaiter struct {
	mb    int
	ready chan struct{}
}

// NewMemoryPool creates a pool of totalMB.
func NewMemoryPool(totalMB int) *MemoryPool {
	return &MemoryPool{total: totalMB, free: totalMB}
}

// Acquire blocks until mb are free (FIFO) or ctx ends.
func (p *MemoryPool) Acquire(ctx context.Context, mb int) error {
	if mb <= 0 {
		return nil
	}
	p.mu.Lock()
	if mb > p.total {
		p.mu.Unlock()
		return fmt.Errorf("activation needs %d MB but the invoker has %d MB of user memory", mb, p.total)
	}
	if len(p.waiters) == 0 && p.free >= mb {
		p.free -= mb
		p.mu.Unlock()
		return nil
	}
	w := &memWaiter{mb: mb, ready: make(chan struct{})}
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		p.mu.Lock()
		defer p.mu.Unlock()
		select {
		case <-w.ready: // granted while we were giving up: hand it back
			p.free += mb
			p.wakeLocked()
		default:
			for i, x := range p.waiters {
				if x == w {
					p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
					break
				}
			}
			p.wakeLocked()
		}
		return fmt.Errorf("wait for %d MB of user memory: %w", mb, ctx.Err())
	}
}

// Release returns mb to the pool.
func (p *MemoryPool) Release(mb int) {
	if mb <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free += mb
	p.wakeLocked()
}

func (p *MemoryPool) wakeLocked() {
	for len(p.waiters) > 0 && p.free >= p.waiters[0].mb {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.free -= w.mb
		close(w.ready)
	}
}

// Free is the memory not handed out, in MB.
func (p *MemoryPool) Free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.free
}
