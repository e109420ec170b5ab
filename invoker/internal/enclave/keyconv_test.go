package enclave_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/internal/enclave"
)

// lateRelay is a managerRelay whose first HeldElsewhere answers no, as when the other invoker's
// owner publishes only after this invoker asked: this invoker's first owner makes its own key.
type lateRelay struct {
	managerRelay
	asked atomic.Int32
}

func (r *lateRelay) HeldElsewhere(ctx context.Context, image string) (bool, error) {
	return r.asked.Add(1) > 1, nil
}

// publishedKid is the controller's decision on evidence, for this test: the first kid published
// is the image's, evidence with another kid is refused (ErrKeyRefused) while published is set.
type publishedKid struct {
	mu        sync.Mutex
	kid       string
	offers    []string
	refusals  int
	published bool
}

func (p *publishedKid) hook(_ context.Context, image string, ev []byte) error {
	var doc struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(ev, &doc); err != nil {
		return fmt.Errorf("evidence of %s: %w", image, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.offers = append(p.offers, doc.Kid)
	if p.published && doc.Kid != p.kid {
		p.refusals++
		return fmt.Errorf("publish evidence of %s: %w", image, enclave.ErrKeyRefused)
	}
	return nil
}

// TestRefusedKeyOwnerIsReplaced: manager b's first owner makes its own key while manager a (another
// invoker) holds the image's published key; the controller refuses it. b replaces the owner with
// one that takes a's key through Keys: the activation in flight on the refused owner finishes
// there (its lease stays alive until released), new reservations get the replacement, Prepare
// and Warm count only the replacement, and the refused owner stops once its lease is released.
func TestRefusedKeyOwnerIsReplaced(t *testing.T) {
	a := newManager(t, keyBackend(t), enclave.ManagerConfig{SlotsPerOwner: 2, HealthInterval: -1})
	la, err := a.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	la.Release()
	ka := kid(t, la.GateSocket())

	ctl := &publishedKid{kid: ka, published: true}
	bb := keyBackend(t)
	b := newManager(t, bb, enclave.ManagerConfig{SlotsPerOwner: 2, HealthInterval: -1,
		Keys: &lateRelay{managerRelay: managerRelay{holder: a, held: true}}, Hooks: enclave.Hooks{Evidence: ctl.hook}})
	l1, err := b.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Release()
	own := kid(t, l1.GateSocket())
	if own == ka {
		t.Fatal("the first owner took the published key: the race was not reproduced")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Prepare(ctx, "nodejs:20", 0); err != nil {
		t.Fatal(err)
	}
	if w := b.Warm(ctx); len(w) != 1 || w[0].Kid != ka {
		t.Fatalf("warm after Prepare: %+v, want nodejs:20 with kid %s", w, ka)
	}
	ctl.mu.Lock()
	refusals, offers := ctl.refusals, ctl.offers
	ctl.mu.Unlock()
	if refusals != 1 {
		t.Fatalf("%d refusals (offers %v), want 1", refusals, offers)
	}

	// The activation in flight on the refused owner goes on; new ones go to the replacement.
	if reason, lost := l1.Lost(); lost {
		t.Fatalf("the lease in flight on the refused owner was cut: %s", reason)
	}
	if k := kid(t, l1.GateSocket()); k != own {
		t.Fatalf("the refused owner answers kid %q, want its own %q", k, own)
	}
	l2, err := b.Reserve(ctx, "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Release()
	if l2.Owner.ID() == l1.Owner.ID() || kid(t, l2.GateSocket()) != ka {
		t.Fatalf("new lease on %s (kid %s), want the replacement of %s with kid %s",
			l2.Owner.ID(), kid(t, l2.GateSocket()), l1.Owner.ID(), ka)
	}
	if n := bb.starts.Load(); n != 2 {
		t.Errorf("%d owner starts on b, want 2 (the refused one and its replacement)", n)
	}

	l1.Release()
	select {
	case <-l1.Died():
	case <-time.After(10 * time.Second):
		t.Fatal("the refused owner was not stopped after its last lease was released")
	}
	if reason, _ := l1.Lost(); reason != "replaced: its image key was refused" {
		t.Errorf("reason %q", reason)
	}
	select {
	case <-l1.Owner.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the refused owner's process is still running")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, err := os.Stat(l1.Dir())
		if os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refused owner's directory is left: %v", err)
		}
	}
	if w := b.Warm(ctx); len(w) != 1 || w[0].Kid != ka {
		t.Fatalf("warm at the end: %+v", w)
	}
}
