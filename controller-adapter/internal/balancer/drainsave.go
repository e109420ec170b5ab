package balancer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"go.uber.org/zap"
)

// Drains outlive the controller: a restarted controller that forgot them would route activations to
// an invoker under maintenance again. Every change of a drain (started, an image moved or given
// up, drained, undrained) is saved through Config.Drains: at once for the operator's Drain and
// Undrain (whose answer says when the save failed), at the next tick for the changes the pings
// and acks make, and at Close. New reads them back; an invoker's saved drain applies from its
// first ping on, so it takes no activations of the images it gave away meanwhile.

// SavedDrain is one invoker's drain as it is kept across controller restarts. The image being
// prepared is not kept: the restarted controller asks a destination again.
type SavedDrain struct {
	Invoker int
	// To is the destination asked for, -1 when chosen per image.
	To       int
	Force    bool
	Started  time.Time
	Drained  bool
	Moved    map[string]int
	NotMoved map[string]string
}

// DrainStore keeps the drains (the controller's store). Saves come from one goroutine at a time.
type DrainStore interface {
	// Drains returns every saved drain.
	Drains(ctx context.Context) ([]SavedDrain, error)
	// SaveDrain replaces invoker d.Invoker's saved drain.
	SaveDrain(ctx context.Context, d SavedDrain) error
	// ForgetDrain removes invoker id's saved drain (none is no error).
	ForgetDrain(ctx context.Context, id int) error
}

// saveTimeout bounds one save of the drains.
const saveTimeout = 5 * time.Second

// loadDrains reads the saved drains into b.saved (applied as the invokers appear).
func (b *Balancer) loadDrains() error {
	if b.cfg.Drains == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), saveTimeout)
	defer cancel()
	saved, err := b.cfg.Drains.Drains(ctx)
	if err != nil {
		return fmt.Errorf("balancer: read the saved drains: %w", err)
	}
	b.saved = map[int]SavedDrain{}
	for _, d := range saved {
		if d.Invoker < 0 || d.Invoker >= b.cfg.MaxInvokers {
			return fmt.Errorf("balancer: saved drain of invoker%d: beyond the %d invokers supported", d.Invoker, b.cfg.MaxInvokers)
		}
		b.saved[d.Invoker] = d
		b.log.Info("invoker drain restored", zap.Int("invoker", d.Invoker), zap.Int("to", d.To),
			zap.Bool("drained", d.Drained), zap.Int("moved", len(d.Moved)), zap.Time("since", d.Started))
	}
	return nil
}

// restoreLocked gives invoker i its saved drain, if any, as its entry is made; b.mu is held.
func (b *Balancer) restoreLocked(i int, inv *invoker) {
	d, ok := b.saved[i]
	if !ok {
		return
	}
	delete(b.saved, i)
	inv.drain = &drain{to: d.To, force: d.Force, started: d.Started, moved: maps.Clone(d.Moved), dest: -1,
		drained: d.Drained, notMoved: maps.Clone(d.NotMoved)}
	if inv.drain.moved == nil {
		inv.drain.moved = map[string]int{}
	}
}

// saveDrains saves the drains changed since the last save and forgets the undrained ones. A failed
// save is tried again at the next tick.
func (b *Balancer) saveDrains() error {
	if b.cfg.Drains == nil {
		return nil
	}
	b.saveMu.Lock()
	defer b.saveMu.Unlock()
	b.mu.Lock()
	var save []SavedDrain
	for i, inv := range b.invokers {
		if d := inv.drain; d != nil && d.dirty {
			d.dirty = false
			save = append(save, SavedDrain{Invoker: i, To: d.to, Force: d.force, Started: d.started, Drained: d.drained,
				Moved: maps.Clone(d.moved), NotMoved: maps.Clone(d.notMoved)})
		}
	}
	forget := b.undrained
	b.undrained = map[int]bool{}
	b.mu.Unlock()
	if len(save) == 0 && len(forget) == 0 {
		return nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), saveTimeout)
	defer cancel()
	var errs []error
	var failed []int
	for id := range forget {
		if err := b.cfg.Drains.ForgetDrain(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("forget the drain of invoker%d: %w", id, err))
			failed = append(failed, id)
		}
	}
	var unsaved []int
	for _, d := range save {
		if err := b.cfg.Drains.SaveDrain(ctx, d); err != nil {
			errs = append(errs, fmt.Errorf("save the drain of invoker%d: %w", d.Invoker, err))
			unsaved = append(unsaved, d.Invoker)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	b.mu.Lock()
	for _, id := range failed {
		if b.invokers[id].drain == nil {
			b.undrained[id] = true
		}
	}
	for _, id := range unsaved {
		if d := b.invokers[id].drain; d != nil {
			d.dirty = true
		}
	}
	b.mu.Unlock()
	return errors.Join(errs...)
}
