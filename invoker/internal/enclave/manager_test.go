package enclave_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/confine/confinetest"
	"github.com/teemate/platform/invoker/internal/enclave/direct"
	"github.com/teemate/platform/invoker/internal/gate"
)

// counting wraps the real direct backend, counts starts and keeps the last start's owner and
// whether it was asked for in the background.
type counting struct {
	enclave.Backend
	starts     atomic.Int32
	background atomic.Bool
	lastOwner  atomic.Value // enclave.Owner
}

func (c *counting) Start(ctx context.Context, spec enclave.StartSpec) (enclave.Owner, error) {
	c.starts.Add(1)
	c.background.Store(spec.Background)
	o, err := c.Backend.Start(ctx, spec)
	if err == nil {
		c.lastOwner.Store(o)
	}
	return o, err
}

func realBackend(t *testing.T, ownerJS string) *counting {
	t.Helper()
	testtool.Require(t, "node")
	cfg := direct.Config{OwnerJS: ownerJS, StartTimeout: 10 * time.Second, StopTimeout: 500 * time.Millisecond}
	if ownerJS == "" {
		wd, _ := os.Getwd()
		js, err := direct.FindOwnerJS(wd)
		if err != nil {
			testtool.Missing(t, "enclave-runtime/trusted/owner.js: "+err.Error())
		}
		cfg.OwnerJS = js
	} else {
		cfg.Lockdown = direct.LockdownNone // a stand-in owner.js has no lockdown.js beside it
	}
	// As root the owners run confined, as the invoker starts them.
	if os.Geteuid() == 0 {
		var err error
		if _, cfg.Confine.Launcher, err = confinetest.Launcher(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := direct.New(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return &counting{Backend: b}
}

func baseDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "en")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func newManager(t *testing.T, b enclave.Backend, cfg enclave.ManagerConfig) *enclave.Manager {
	t.Helper()
	cfg.BaseDir = baseDir(t)
	m := enclave.NewManager(b, cfg, zap.NewNop())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m
}

func pidOf(t *testing.T, o enclave.Owner) int {
	t.Helper()
	p, ok := o.(interface{ Pid() int })
	if !ok {
		t.Fatal("owner has no Pid")
	}
	return p.Pid()
}

func TestLazyStartOfExactlyOneOwner(t *testing.T) {
	b := realBackend(t, "")
	m := newManager(t, b, enclave.ManagerConfig{SlotsPerOwner: 16})
	var wg sync.WaitGroup
	leases := make([]*enclave.Lease, 10)
	errs := make([]error, 10)
	for i := range leases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			leases[i], errs[i] = m.Reserve(context.Background(), "nodejs:20")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("reserve %d: %v", i, err)
		}
	}
	if n := b.starts.Load(); n != 1 {
		t.Fatalf("%d owners started for one cold image, want 1", n)
	}
	for _, l := range leases[1:] {
		if l.Owner.ID() != leases[0].Owner.ID() {
			t.Fatal("leases on different owners")
		}
	}
	if _, err := gate.Ping(context.Background(), leases[0].GateSocket()); err != nil {
		t.Fatalf("gate of the lease: %v", err)
	}
	if filepath.Dir(leases[0].GateSocket()) != leases[0].Dir() {
		t.Fatalf("gate %s not in dir %s", leases[0].GateSocket(), leases[0].Dir())
	}
	for _, l := range leases {
		l.Release()
		l.Release() // idempotent
	}
}

func TestWaitForSlotAndNoCapacity(t *testing.T) {
	b := realBackend(t, "")
	m := newManager(t, b, enclave.ManagerConfig{SlotsPerOwner: 1})
	l1, err := m.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := m.Reserve(ctx, "nodejs:20"); !errors.Is(err, enclave.ErrNoCapacity) {
		t.Fatalf("full owner: %v", err)
	}
	got := make(chan *enclave.Lease)
	go func() {
		l, err := m.Reserve(context.Background(), "nodejs:20")
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	select {
	case <-got:
		t.Fatal("reserve succeeded while the only slot was leased")
	case <-time.After(50 * time.Millisecond):
	}
	l1.Release()
	select {
	case l2 := <-got:
		if l2.Owner.ID() != l1.Owner.ID() {
			t.Fatal("a second owner was started although none may be")
		}
		l2.Release()
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not woken by the release")
	}
	if n := b.starts.Load(); n != 1 {
		t.Fatalf("%d starts", n)
	}
}

func TestSecondOwnerWhenAllowed(t *testing.T) {
	b := realBackend(t, "")
	m := newManager(t, b, enclave.ManagerConfig{SlotsPerOwner: 1, MaxOwnersPerImage: 2})
	l1, err := m.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	l2, err := m.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	if l1.Owner.ID() == l2.Owner.ID() {
		t.Fatal("second lease on the full owner")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := m.Reserve(ctx, "nodejs:20"); !errors.Is(err, enclave.ErrNoCapacity) {
		t.Fatalf("third: %v", err)
	}
	// A different image has its own owner.
	l3, err := m.Reserve(context.Background(), "nodejs:18")
	if err != nil {
		t.Fatal(err)
	}
	if n := b.starts.Load(); n != 3 {
		t.Fatalf("%d starts, want 3", n)
	}
	l1.Release()
	l2.Release()
	l3.Release()
}

func TestKilledOwnerIsRestarted(t *testing.T) {
	b := realBackend(t, "")
	m := newManager(t, b, enclave.ManagerConfig{SlotsPerOwner: 4, Prestart: []string{"nodejs:20"}, HealthInterval: -1})
	l, err := m.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	first := l.Owner.ID()
	if err := syscall.Kill(pidOf(t, l.Owner), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Died():
	case <-time.After(5 * time.Second):
		t.Fatal("lease did not see its owner die")
	}
	if !errors.Is(l.Owner.Err(), enclave.ErrOwnerDied) {
		t.Fatalf("owner err %v", l.Owner.Err())
	}
	l.Release()
	// Prestarted: a replacement starts at once, without waiting for demand.
	deadline := time.Now().Add(10 * time.Second)
	for b.starts.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("prestarted image not restarted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	l2, err := m.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Release()
	if l2.Owner.ID() == first {
		t.Fatal("lease on the dead owner")
	}
	if _, err := gate.Ping(context.Background(), l2.GateSocket()); err != nil {
		t.Fatal(err)
	}
}

func TestUnresponsiveOwnerIsDropped(t *testing.T) {
	b := realBackend(t, "")
	m := newManager(t, b, enclave.ManagerConfig{SlotsPerOwner: 2, HealthInterval: 30 * time.Millisecond,
		PingTimeout: 100 * time.Millisecond, PingFailures: 2})
	l, err := m.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	pid := pidOf(t, l.Owner)
	// A stopped process keeps its socket but never answers: only the pings can tell.
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT)
	select {
	case <-l.Died():
	case <-time.After(5 * time.Second):
		t.Fatal("hung owner not dropped")
	}
	select {
	case <-l.Owner.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("dropped owner not stopped")
	}
	// On demand, a new owner.
	l2, err := m.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	l2.Release()
}

func TestStartFailureReachesWaiters(t *testing.T) {
	bad := filepath.Join(baseDir(t), "owner.js")
	if err := os.WriteFile(bad, []byte("process.stderr.write('cannot start\\n'); process.exit(3)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := realBackend(t, bad)
	m := newManager(t, b, enclave.ManagerConfig{})
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = m.Reserve(context.Background(), "nodejs:20")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil || !errors.Is(err, enclave.ErrOwnerDied) {
			t.Fatalf("reserve %d: %v", i, err)
		}
	}
}

func TestCloseStopsOwners(t *testing.T) {
	b := realBackend(t, "")
	m := enclave.NewManager(b, enclave.ManagerConfig{BaseDir: baseDir(t)}, zap.NewNop())
	l, err := m.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Owner.Done():
	default:
		t.Fatal("owner still running after Close")
	}
	select {
	case <-l.Died():
	default:
		t.Fatal("lease not told")
	}
	if _, err := m.Reserve(context.Background(), "nodejs:20"); !errors.Is(err, enclave.ErrClosed) {
		t.Fatalf("reserve after close: %v", err)
	}
}
