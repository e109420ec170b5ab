package oci

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/internal/sandbox"
	"github.com/teemate/platform/invoker/internal/sandbox/sandboxtest"
)

// benchStart measures Create (pool acquire, per-use configuration, `runc start`) on the teemate
// image; waiting for the exit and destroying are outside the timer, as they are off the
// activation's critical path.
func benchStart(b *testing.B, poolSize int) {
	key := PoolKey{Image: "teemate", MemoryMB: 64}
	var prewarm []PoolKey
	if poolSize > 0 {
		prewarm = []PoolKey{key}
	}
	rt := newRuntime(b, Config{PoolSize: poolSize, Prewarm: prewarm})
	ctx := context.Background()
	dir := b.TempDir()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if poolSize > 0 {
			b.StopTimer()
			p := rt.poolFor(rt.normalise(key))
			for len(p.ready) < poolSize { // let the refill catch up: steady state, not a burst
				<-sleepTick()
			}
			b.StartTimer()
		}
		sb, err := rt.Create(ctx, sandbox.Spec{Name: fmt.Sprintf("wsk0_%d_bench", i), Image: "teemate", MemoryMB: 64,
			Command: sandboxtest.StartStubCommand(),
			Mounts:  []sandbox.Mount{{HostPath: dir, GuestPath: "/run/teemate/proxy"}}})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_, _ = sandboxtest.Drain(sb)
		<-sb.Exited()
		if err := sb.Destroy(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkPoolAcquireStart: a pooled container, the backend's normal path.
func BenchmarkPoolAcquireStart(b *testing.B) { benchStart(b, 2) }

// BenchmarkColdCreateStart: no pool, create and start on the request path, for comparison.
func BenchmarkColdCreateStart(b *testing.B) { benchStart(b, -1) }

func sleepTick() <-chan time.Time { return time.After(5 * time.Millisecond) }
