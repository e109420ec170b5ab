package enclave

import (
	"context"
	"fmt"
	"slices"

	"github.com/teemate/platform/invoker/internal/gate"
)

// WarmImage is an image with a running owner here and the kid of the image key it holds (empty
// while its owners hold none, e.g. awaiting a transfer).
type WarmImage struct {
	Image string
	Kid   string
}

// Warm lists the images with running owners, sorted, each with the kid its owners answer pings
// with. The controller reads it from the health pings to move images before it drains an invoker
// (issue #20); an owner that does not answer within ctx, or whose evidence has had no answer from
// the controller yet, counts as holding no key.
func (m *Manager) Warm(ctx context.Context) []WarmImage {
	type own struct {
		image, socket string
		offered       <-chan struct{}
	}
	m.mu.Lock()
	owners := make([]own, 0, len(m.owners))
	for _, h := range m.owners {
		owners = append(owners, own{h.image, h.owner.GateSocket(), h.offered})
	}
	m.mu.Unlock()
	kids := map[string]string{}
	for _, o := range owners {
		kid := ""
		select {
		case <-o.offered:
			if pong, err := gate.Ping(ctx, o.socket); err == nil {
				kid = pong.Kid
			}
		default:
			// Its evidence has had no answer yet: its key may be refused (replaceRefused), so it
			// counts as holding none until then. A refused owner is out of m.owners already.
		}
		// One keyed owner makes the image keyed: owners of one image share its key.
		if cur, seen := kids[o.image]; !seen || cur == "" {
			kids[o.image] = kid
		}
	}
	out := make([]WarmImage, 0, len(kids))
	for image, kid := range kids {
		out = append(out, WarmImage{Image: image, Kid: kid})
	}
	slices.SortFunc(out, func(a, b WarmImage) int {
		if a.Image < b.Image {
			return -1
		}
		if a.Image > b.Image {
			return 1
		}
		return 0
	})
	return out
}

// Prepare makes image warm here before activations of it arrive: it starts the image's owner
// unless one runs, which takes the image key the way any first owner does (from another invoker
// through KeyRelay when one holds it). from is the invoker the image moves from (a drain, -1 for
// none): the owner takes the image's state (key and opened code) from that invoker's enclave when
// it holds the image's key, from any holder otherwise (StateRelay.StateSource). It returns once
// an owner is ready and its evidence has had its first answer, or with the start's error: an owner whose image key the controller refused is no warm owner, so
// Prepare waits for its replacement (replaceRefused). The owner counts as used
// (ManagerConfig.IdleTimeout counts from here): activations follow within moments. An owner
// Prepare starts runs at background CPU priority (StartSpec.Background) until its first lease.
func (m *Manager) Prepare(ctx context.Context, image string, from int) error {
	for {
		m.mu.Lock()
		m.core.Touch(image) // false when no owner runs: the reservation below starts one
		m.mu.Unlock()
		h := m.ownerOf(image)
		if h == nil {
			// Started ahead of its traffic, the owner leaves the CPU to the owners serving now
			// (on this invoker, and on the drained one when both share a host) until its
			// first activation.
			m.mu.Lock()
			m.prepared[image] = from
			m.mu.Unlock()
			l, err := m.reserve(ctx, image)
			m.mu.Lock()
			delete(m.prepared, image) // unused when a start was under way: not for the next one
			m.mu.Unlock()
			if err != nil {
				return fmt.Errorf("prepare %s: %w", image, err)
			}
			h = l.h
			l.Release()
		}
		select {
		case <-h.offered:
		case <-ctx.Done():
			return fmt.Errorf("prepare %s: waiting for the owner's evidence to be published: %w", image, ctx.Err())
		}
		m.mu.Lock()
		refused := h.refused
		m.mu.Unlock()
		if !refused {
			return nil
		}
	}
}

// ownerOf returns an owner of image in the pool (the first by id), nil when none runs.
func (m *Manager) ownerOf(image string) *ownerHandle {
	ids, _ := m.keyEndpoints(image)
	if len(ids) == 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.owners[ids[0]] // nil when it was dropped meanwhile: Prepare then reserves
}
