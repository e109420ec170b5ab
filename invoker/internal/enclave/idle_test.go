package enclave_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/gate"
)

// A real owner of an image not prestarted is kept while leased, however long, stopped once idle
// for IdleTimeout, and the image's next reservation starts a new one.
func TestIdleOwnerIsRetiredAndRestartedOnDemand(t *testing.T) {
	const idle = 400 * time.Millisecond
	b := realBackend(t, "")
	m := newManager(t, b, enclave.ManagerConfig{SlotsPerOwner: 4, HealthInterval: -1, IdleTimeout: idle})
	ctx := context.Background()
	l, err := m.Reserve(ctx, "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	first := l.Owner
	time.Sleep(3 * idle)
	if reason, lost := l.Lost(); lost {
		t.Fatalf("a leased owner was dropped: %s", reason)
	}
	released := time.Now()
	l.Release()
	select {
	case <-first.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the idle owner's process was not stopped")
	}
	if took := time.Since(released); took < idle {
		t.Fatalf("retired %v after its release, before the idle timeout %v", took, idle)
	}
	if w := m.Warm(ctx); len(w) != 0 {
		t.Fatalf("warm after the retirement: %v", w)
	}
	l2, err := m.Reserve(ctx, "nodejs:20")
	if err != nil {
		t.Fatalf("reserve after the retirement: %v", err)
	}
	defer l2.Release()
	if l2.Owner.ID() == first.ID() {
		t.Fatal("lease on the retired owner")
	}
	if n := b.starts.Load(); n != 2 {
		t.Fatalf("%d owner starts, want 2", n)
	}
	if _, err := gate.Ping(ctx, l2.GateSocket()); err != nil {
		t.Fatalf("the new owner's gate: %v", err)
	}
}

// A prestarted image keeps its owner however long it is idle; Prepare counts an owner as used.
func TestIdleTimeoutSparesPrestartedAndPrepared(t *testing.T) {
	const idle = 300 * time.Millisecond
	b := realBackend(t, "")
	m := newManager(t, b, enclave.ManagerConfig{SlotsPerOwner: 4, HealthInterval: -1, IdleTimeout: idle,
		Prestart: []string{"nodejs:20"}})
	ctx := context.Background()
	l, err := m.Reserve(ctx, "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	time.Sleep(4 * idle)
	if reason, lost := l.Lost(); lost {
		t.Fatalf("a prestarted owner was retired: %s", reason)
	}
	if n := b.starts.Load(); n != 1 {
		t.Fatalf("%d owner starts, want 1", n)
	}

	// Not prestarted: Prepare starts the owner, and again right before the timeout keeps it.
	b2 := realBackend(t, "")
	m2 := newManager(t, b2, enclave.ManagerConfig{SlotsPerOwner: 4, HealthInterval: -1, IdleTimeout: 2 * idle})
	if err := m2.Prepare(ctx, "nodejs:20", 0); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		time.Sleep(idle)
		if err := m2.Prepare(ctx, "nodejs:20", 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := b2.starts.Load(); n != 1 {
		t.Fatalf("prepared owner retired while prepared every %v (idle timeout %v): %d starts", idle, 2*idle, n)
	}
}

// A prepared owner (a drain's destination) starts in the background and serves its first
// activation at normal priority: it does not slow the owners serving now while it starts.
func TestPreparedOwnerStartsInTheBackground(t *testing.T) {
	if os.Geteuid() != 0 {
		testtool.Missing(t, "moving owners between cpu cgroups needs root")
	}
	b := realBackend(t, "")
	m := newManager(t, b, enclave.ManagerConfig{SlotsPerOwner: 4, HealthInterval: -1})
	ctx := context.Background()
	if err := m.Prepare(ctx, "nodejs:20", 0); err != nil {
		t.Fatal(err)
	}
	bg, ok := b.lastOwner.Load().(interface{ Background() bool })
	if !ok {
		t.Fatal("the owner does not say whether it runs in the background")
	}
	if !b.background.Load() || !bg.Background() {
		t.Fatalf("Prepare's owner: asked for in the background %v, runs there %v; want both",
			b.background.Load(), bg.Background())
	}
	l, err := m.Reserve(ctx, "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if n := b.starts.Load(); n != 1 {
		t.Fatalf("%d owner starts, want 1", n)
	}
	if bg.Background() {
		t.Fatal("the owner is still in the background after its first activation's lease")
	}

	// An activation's own start is never in the background.
	m2 := newManager(t, b, enclave.ManagerConfig{SlotsPerOwner: 4, HealthInterval: -1})
	l2, err := m2.Reserve(ctx, "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Release()
	if b.background.Load() {
		t.Fatal("an activation's owner was started in the background")
	}
}
