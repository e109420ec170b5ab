package enclave_test

import (
	"context"
	"errors"
	"os"
	"sync"
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

// keyBackend is the real direct backend with a key dir (the invoker's, in its state dir).
func keyBackend(t *testing.T) *counting {
	t.Helper()
	testtool.Require(t, "node")
	wd, _ := os.Getwd()
	js, err := direct.FindOwnerJS(wd)
	if err != nil {
		testtool.Missing(t, "enclave-runtime/trusted/owner.js: "+err.Error())
	}
	return keyBackendAt(t, js)
}

// keyBackendAt is keyBackend running the owner.js at js (another build of the runtime).
func keyBackendAt(t *testing.T, js string) *counting {
	t.Helper()
	var err error
	cfg := direct.Config{OwnerJS: js, StartTimeout: 10 * time.Second, StopTimeout: 500 * time.Millisecond, KeyDir: t.TempDir()}
	if os.Geteuid() == 0 {
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

func kid(t *testing.T, socket string) string {
	t.Helper()
	p, err := gate.Ping(context.Background(), socket)
	if err != nil {
		t.Fatal(err)
	}
	return p.Kid
}

// TestSecondOwnerTakesTheImageKey: the second owner of an image starts awaiting the key and gets
// the first one's by transfer (no second start); a rotation reaches both.
func TestSecondOwnerTakesTheImageKey(t *testing.T) {
	b := keyBackend(t)
	var mu sync.Mutex
	var transfers []string
	m := newManager(t, b, enclave.ManagerConfig{SlotsPerOwner: 1, MaxOwnersPerImage: 2, HealthInterval: -1,
		Hooks: enclave.Hooks{KeyTransferred: func(image, owner, peer string, tr *gate.Transfer) {
			mu.Lock()
			defer mu.Unlock()
			if len(tr.Request) == 0 || len(tr.Offer) == 0 {
				t.Errorf("transfer to %s relayed nothing", owner)
			}
			transfers = append(transfers, image+" "+owner+" from "+peer+" "+tr.Kid)
		}}})
	l1, err := m.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Release()
	l2, err := m.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Release()
	k1, k2 := kid(t, l1.GateSocket()), kid(t, l2.GateSocket())
	if k1 == "" || k1 != k2 {
		t.Fatalf("kids %q and %q", k1, k2)
	}
	mu.Lock()
	want := "nodejs:20 " + l2.Owner.ID() + " from " + l1.Owner.ID() + " " + k1
	if len(transfers) != 1 || transfers[0] != want {
		t.Fatalf("transfers %q, want [%q]", transfers, want)
	}
	mu.Unlock()
	if n := b.starts.Load(); n != 2 {
		t.Fatalf("%d starts, want 2 (no restart after the transfer)", n)
	}

	nk, prev, err := m.RotateKey(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	if prev != k1 || nk == k1 || len(nk) != 32 {
		t.Fatalf("rotated to %q from %q (was %q)", nk, prev, k1)
	}
	if a, b := kid(t, l1.GateSocket()), kid(t, l2.GateSocket()); a != nk || b != nk {
		t.Fatalf("after rotation the owners have %q and %q, want %q", a, b, nk)
	}
	if _, _, err := m.RotateKey(context.Background(), "python:3"); !errors.Is(err, enclave.ErrNoOwner) {
		t.Fatalf("rotate without an owner: %v", err)
	}
}

// TestRestartedOwnerKeepsTheImageKey: the owner that replaces a killed one unseals the same key.
func TestRestartedOwnerKeepsTheImageKey(t *testing.T) {
	b := keyBackend(t)
	m := newManager(t, b, enclave.ManagerConfig{SlotsPerOwner: 2, Prestart: []string{"nodejs:20"}, HealthInterval: -1})
	l, err := m.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	before := kid(t, l.GateSocket())
	if err := syscall.Kill(pidOf(t, l.Owner), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Died():
	case <-time.After(5 * time.Second):
		t.Fatal("lease did not see its owner die")
	}
	l.Release()
	l2, err := m.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Release()
	if l2.Owner.ID() == l.Owner.ID() {
		t.Fatal("lease on the dead owner")
	}
	if after := kid(t, l2.GateSocket()); after != before {
		t.Fatalf("restarted owner has kid %q, want %q", after, before)
	}
}

// peerKiller kills the live owner (the transfer's peer) as an owner that awaits the key starts, so
// the transfer fails.
type peerKiller struct {
	*counting
	mu   sync.Mutex
	peer enclave.Owner
}

func (p *peerKiller) Start(ctx context.Context, spec enclave.StartSpec) (enclave.Owner, error) {
	o, err := p.counting.Start(ctx, spec)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil && spec.KeyMode == enclave.KeyAwait && p.peer != nil {
		if perr := p.peer.Stop(ctx); perr != nil {
			return nil, perr
		}
	}
	if p.peer == nil {
		p.peer = o
	}
	return o, err
}

// TestFailedTransferRestartsTheOwner: when the peer is gone before the transfer, the new owner is
// restarted to unseal the key itself, and it serves with the image's kid.
func TestFailedTransferRestartsTheOwner(t *testing.T) {
	b := &peerKiller{counting: keyBackend(t)}
	m := newManager(t, b, enclave.ManagerConfig{SlotsPerOwner: 1, MaxOwnersPerImage: 2, HealthInterval: -1})
	l1, err := m.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	k1 := kid(t, l1.GateSocket())
	l2, err := m.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Release()
	l1.Release()
	if k2 := kid(t, l2.GateSocket()); k2 != k1 {
		t.Fatalf("after the failed transfer the owner has kid %q, want the sealed %q", k2, k1)
	}
	// The first owner, the awaiting start and its restart.
	if n := b.starts.Load(); n != 3 {
		t.Fatalf("%d starts, want 3", n)
	}
}
