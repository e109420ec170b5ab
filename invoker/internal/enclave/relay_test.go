package enclave_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/teemate/platform/invoker/internal/enclave"
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
