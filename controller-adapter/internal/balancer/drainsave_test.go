package balancer

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

// memDrains is a DrainStore in memory whose saves fail while failing is set (a full disk).
type memDrains struct {
	mu      sync.Mutex
	saved   map[int]SavedDrain
	failing bool
}

func (m *memDrains) Drains(context.Context) ([]SavedDrain, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []SavedDrain
	for _, d := range m.saved {
		out = append(out, d)
	}
	return out, nil
}

func (m *memDrains) SaveDrain(_ context.Context, d SavedDrain) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failing {
		return errors.New("disk full")
	}
	m.saved[d.Invoker] = d
	return nil
}

func (m *memDrains) ForgetDrain(_ context.Context, id int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failing {
		return errors.New("disk full")
	}
	delete(m.saved, id)
	return nil
}

func (m *memDrains) get(id int) (SavedDrain, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.saved[id]
	return d, ok
}

func (m *memDrains) fail(on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failing = on
}

// TestDrainSaveFailsThenCatchesUp: a drain whose save fails is in effect and says that a restart
// would forget it; the next ticks save it once the store takes writes again, drained included, and
// an undrain whose save failed is forgotten in the store later the same way. A balancer started on
// the saved drain restores it as the invoker's entry appears.
func TestDrainSaveFailsThenCatchesUp(t *testing.T) {
	store := &memDrains{saved: map[int]SavedDrain{}}
	f := newFixture(t, func(c *Config) { c.Drains = store })
	startScriptedInvoker(t, f.kcfg, 0, 1024, true)
	startScriptedInvoker(t, f.kcfg, 1, 1024, true)
	f.waitState(t, 0, "up")
	f.waitState(t, 1, "up")

	store.fail(true)
	s, err := f.bal.Drain(1, 0, false)
	if err == nil || !strings.Contains(err.Error(), "a controller restart would forget it") || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("drain with a failing store: %v", err)
	}
	if s.State == "serving" {
		t.Fatalf("the drain is not in effect after a failed save: %+v", s)
	}
	store.fail(false)
	eventually(t, "the drain saved, drained, at a tick", func() bool {
		d, ok := store.get(1)
		return ok && d.Drained && d.To == 0
	})

	store.fail(true)
	if _, err := f.bal.Undrain(1); err == nil || !strings.Contains(err.Error(), "would drain it again") {
		t.Fatalf("undrain with a failing store: %v", err)
	}
	store.fail(false)
	eventually(t, "the undrain saved at a tick", func() bool {
		_, ok := store.get(1)
		return !ok
	})

	// A saved drain applies to the invoker's entry in a new balancer, before any activation.
	if _, err := f.bal.Drain(1, 0, false); err != nil {
		t.Fatal(err)
	}
	g := newFixture(t, func(c *Config) { c.Drains = store })
	startScriptedInvoker(t, g.kcfg, 1, 1024, true)
	g.waitState(t, 1, "up")
	if s, err := g.bal.DrainStatusOf(1); err != nil || s.To != 0 || s.State == "serving" {
		t.Fatalf("restored drain: %+v %v", s, err)
	}
}
