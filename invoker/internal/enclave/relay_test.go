package enclave_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/gate"
)

// managerRelay carries key requests straight to another Manager (the controller's part, without
// the controller: controller-adapter/embed's test runs that). held and heldErr are what the
// controller would say about a holder; relayErr makes the holder's answer fail.
type managerRelay struct {
	holder   *enclave.Manager
	held     bool
	heldErr  error
	relayErr error
}

func (r managerRelay) HeldElsewhere(context.Context, string) (bool, error) { return r.held, r.heldErr }

func (r managerRelay) Relay(ctx context.Context, image string, request json.RawMessage) (json.RawMessage, error) {
	if r.relayErr != nil {
		return nil, r.relayErr
	}
	return r.holder.OfferKey(ctx, image, request)
}

// TestFirstOwnerTakesTheKeyFromAnotherInvoker: two managers with their own backends (their own
// sealing keys), as on two invokers. The first owner of an image on the second takes the first's key
// through Keys, in one start; a failing relay makes it fall back to a key of its own (a second
// start); a controller that cannot say who holds the key leaves the owner to make its own at once.
func TestFirstOwnerTakesTheKeyFromAnotherInvoker(t *testing.T) {
	a := newManager(t, keyBackend(t), enclave.ManagerConfig{SlotsPerOwner: 1, HealthInterval: -1})
	la, err := a.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	defer la.Release()
	ka := kid(t, la.GateSocket())

	for _, c := range []struct {
		name       string
		relay      managerRelay
		wantStarts int32
		sameKid    bool
	}{
		{"taken", managerRelay{holder: a, held: true}, 1, true},
		{"relay fails", managerRelay{holder: a, held: true, relayErr: errors.New("no answer")}, 2, false},
		{"controller unreachable", managerRelay{holder: a, heldErr: errors.New("connection refused")}, 1, false},
		{"nobody holds it", managerRelay{holder: a}, 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			bb := keyBackend(t)
			b := newManager(t, bb, enclave.ManagerConfig{SlotsPerOwner: 1, HealthInterval: -1, Keys: c.relay})
			lb, err := b.Reserve(context.Background(), "nodejs:20")
			if err != nil {
				t.Fatal(err)
			}
			defer lb.Release()
			kb := kid(t, lb.GateSocket())
			if kb == "" || (kb == ka) != c.sameKid {
				t.Fatalf("kid %q on the second manager, %q on the first; same wanted: %v", kb, ka, c.sameKid)
			}
			if n := bb.starts.Load(); n != c.wantStarts {
				t.Fatalf("%d starts, want %d", n, c.wantStarts)
			}
		})
	}
	if _, err := a.OfferKey(context.Background(), "python:3", json.RawMessage(`{}`)); !errors.Is(err, enclave.ErrNoOwner) {
		t.Fatalf("offer of an image without owner: %v", err)
	}
	if _, err := a.OfferKey(context.Background(), "nodejs:20", json.RawMessage(`{"pub":"AAAA"}`)); err == nil {
		t.Fatal("an offer for a malformed request was made")
	}
}

// preferRecorder is a state relay that records whom a state transfer would be taken from and
// refuses it (the owner then makes its own key, which is all the test needs).
type preferRecorder struct {
	managerRelay
	mu     sync.Mutex
	prefer []int
}

func (r *preferRecorder) StateSource(_ string, prefer int) enclave.StateSource {
	r.mu.Lock()
	r.prefer = append(r.prefer, prefer)
	r.mu.Unlock()
	return refusingSource{}
}

type refusingSource struct{}

func (refusingSource) Offer(context.Context, json.RawMessage) (*gate.StateOffer, error) {
	return nil, errors.New("no offer here")
}

func (refusingSource) Chunks(context.Context, string, int, int) (*gate.StateChunks, error) {
	return nil, errors.New("no session here")
}

// A prepared owner (a drain's destination) asks for the image's state from the invoker the image
// moves from; an activation's own start asks any holder.
func TestPreparedOwnerTakesStateFromTheDrainsSource(t *testing.T) {
	r := &preferRecorder{managerRelay: managerRelay{held: true}}
	m := newManager(t, keyBackend(t), enclave.ManagerConfig{SlotsPerOwner: 1, HealthInterval: -1, Keys: r})
	if err := m.Prepare(context.Background(), "nodejs:20", 3); err != nil {
		t.Fatal(err)
	}
	m2 := newManager(t, keyBackend(t), enclave.ManagerConfig{SlotsPerOwner: 1, HealthInterval: -1, Keys: r})
	l, err := m2.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Equal(r.prefer, []int{3, -1}) {
		t.Fatalf("state asked of %v, want [3 -1] (the drain's source, then any holder)", r.prefer)
	}
}
