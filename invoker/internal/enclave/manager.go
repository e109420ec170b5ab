package enclave

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/enclave/pool"
	"github.com/teemate/platform/invoker/internal/gate"
)

// ManagerConfig configures the Manager.
type ManagerConfig struct {
	// BaseDir holds one directory per owner (its gate socket and work files). Keep it short: unix
	// socket paths are limited to 107 bytes.
	BaseDir string
	// SlotsPerOwner is the TCS slots each owner offers (16 by default).
	SlotsPerOwner int
	// MaxOwnersPerImage bounds the owners of one image (1 by default); above 1, a further owner is
	// started when every owner of the image is full.
	MaxOwnersPerImage int
	// Prestart lists images whose owner starts at once (and is restarted at once when it dies).
	Prestart []string
	// HealthInterval is the ping period (5 s by default; negative disables pings; exits are seen
	// at once either way).
	HealthInterval time.Duration
	// PingTimeout bounds one health ping (2 s by default).
	PingTimeout time.Duration
	// PingFailures is how many pings in a row may fail before the owner is dropped (2 by default):
	// a single slow answer under load should not kill an owner serving many activations.
	PingFailures int
	// IdleTimeout retires an owner of an image not in Prestart after this long without a lease
	// (DefaultIdleTimeout when zero; negative: owners stay until they die or the manager closes).
	// The image's next reservation starts an owner again, paying a cold start; prestarted images
	// are never retired.
	IdleTimeout time.Duration
	// Isolate is passed to the backend ("addon", "worker" or "" for the best available).
	Isolate string
	// IsolateReuse is passed to the backend (StartSpec.IsolateReuse).
	IsolateReuse string
	// PagePoolMB is passed to the backend (StartSpec.PagePoolMB).
	PagePoolMB *int
	// Hooks receive lifecycle events, e.g. for metrics; all optional.
	Hooks Hooks
	// Keys reaches the image keys other invokers hold (through the controller). Nil: the first
	// owner of an image here unseals or makes its key, whatever other invokers hold.
	Keys KeyRelay
}

// KeyRelay carries an image key from another invoker's owner to an owner here: the controller
// relays the request and the offer (PROTOCOL.md, "Image key across invokers"), both opaque to the
// host: evidence, an ephemeral public key and HPKE ciphertext.
type KeyRelay interface {
	// HeldElsewhere says whether another, healthy invoker holds image's key (it published the
	// image's evidence), so that a first owner here should take that key rather than make one.
	HeldElsewhere(ctx context.Context, image string) (bool, error)
	// Relay carries an owner's key-request for image to that invoker and returns its owner's
	// key-offer, waiting until ctx ends at most.
	Relay(ctx context.Context, image string, request json.RawMessage) (json.RawMessage, error)
}

// Hooks are optional callbacks; they must not block, except Evidence.
type Hooks struct {
	OwnerStarted func(image string, took time.Duration)
	StartFailed  func(image string, err error)
	OwnerDropped func(image, id, reason string)
	// KeyTransferred: owner took the image key from peer ("" for an owner of another invoker,
	// through KeyRelay); t holds what the host relayed.
	KeyTransferred func(image, owner, peer string, t *gate.Transfer)
	// StateMoved: owner took the image's state (key and opened code) from peer ("" for an owner of
	// another invoker) by state transfer; mv holds its figures.
	StateMoved func(image, owner, peer string, mv *StateMove)
	// Evidence receives the evidence an owner serves (gate message evidence: its image key bound
	// to its measurement), byte for byte, once the owner is ready and again whenever it changes
	// (a rotated or transferred key, seen at a health ping). It may block up to ctx (the invoker
	// publishes it to the controller); an error makes the manager offer it again at the next
	// ping. An owner that holds no image key yet is asked again at the next ping. An error that
	// wraps ErrKeyRefused (another invoker holds the image's published key) makes the manager
	// replace the image's owners here with ones that take that key (replaceRefused).
	Evidence func(ctx context.Context, image string, evidence []byte) error
}

// Manager keeps the warm owners, one set per image, and hands out leases on their TCS slots. The
// decisions are pool.Pool's; the Manager is the thin loop around it that does the I/O: it starts,
// watches, pings and stops owners as the pool decides, and reports back what happened.
type Manager struct {
	backend Backend
	cfg     ManagerConfig
	log     *zap.Logger

	// base bounds owner starts: Close cancels it, so a start in flight does not hold Close up.
	base   context.Context
	cancel context.CancelFunc
	stop   chan struct{} // closed by Close: ends the watchers and the health ticker
	wg     sync.WaitGroup

	mu      sync.Mutex
	core    *pool.Pool
	owners  map[string]*ownerHandle    // running owners the pool knows, by id
	waiters map[pool.Ticket]chan reply // reservations waiting for their grant or reject
	// sessions: the owner each state transfer session this invoker offered lives in (ServeState).
	sessions map[string]stateSession
	// refusals counts, by image, the owners replaced because their image key was refused since the
	// image's evidence was last accepted: the first is a warning, a repeat says the replacement
	// could not take the published key either.
	refusals map[string]int
	// prepared: images whose next owner start is a prepare's (Prepare), with the invoker the
	// image moves from: the owner starts at background CPU priority until its first activation
	// (Reserve), and takes the image's state from that invoker when it holds the key.
	prepared map[string]int
	closed   bool
}

type ownerHandle struct {
	image string
	owner Owner
	dir   string
	dead  chan struct{} // closed when the pool drops the owner
	// lost is why the pool dropped the owner (its exit, failed pings, the manager closing); set
	// before dead is closed and never after, so a reader that saw dead closed may read it.
	lost string

	// evMu serialises offers of this owner's evidence (a start and a ping may overlap).
	evMu sync.Mutex
	// evidence is what Hooks.Evidence last accepted; evFailing says the last offer failed (so a
	// failure is logged once, not at every ping).
	evidence  []byte
	evFailing bool
	// offered is closed once the owner's first evidence offer has an answer (at once without
	// Hooks.Evidence): Prepare waits for it, so that an owner whose key is refused is not taken
	// for warm.
	offered   chan struct{}
	offerOnce sync.Once

	// leases is how many leases of the owner are out (m.mu).
	leases int
	// refused (m.mu): the controller refused the owner's image key; the pool has dropped it and it
	// is stopped once idle (closed when its last lease is released) is closed.
	refused bool
	idle    chan struct{}
}

type reply struct {
	lease *Lease
	err   error
}

// DefaultIdleTimeout is ManagerConfig.IdleTimeout's default: an image without activations for ten
// minutes gives its enclave's memory (EPC on sgx) back, as OpenWhisk reclaims idle containers,
// while an image used every few minutes stays warm.
const DefaultIdleTimeout = 10 * time.Minute

// NewManager starts the health loop and the prestarted owners (in the background).
func NewManager(backend Backend, cfg ManagerConfig, log *zap.Logger) *Manager {
	if cfg.SlotsPerOwner <= 0 {
		cfg.SlotsPerOwner = 16 // the backend needs the number as much as the pool
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = 5 * time.Second
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 2 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	base, cancel := context.WithCancel(context.Background())
	m := &Manager{backend: backend, cfg: cfg, log: log, base: base, cancel: cancel, stop: make(chan struct{}),
		owners: map[string]*ownerHandle{}, waiters: map[pool.Ticket]chan reply{}, refusals: map[string]int{},
		prepared: map[string]int{}}
	m.core = pool.New(pool.Config{SlotsPerOwner: cfg.SlotsPerOwner, MaxOwnersPerImage: cfg.MaxOwnersPerImage,
		Prestart: cfg.Prestart, HealthInterval: cfg.HealthInterval, PingFailures: cfg.PingFailures,
		IdleTimeout: cfg.IdleTimeout}, time.Now())
	m.mu.Lock()
	m.applyLocked(m.core.Prestart())
	m.mu.Unlock()
	if period := tickPeriod(cfg.HealthInterval, cfg.IdleTimeout); period > 0 {
		m.wg.Add(1)
		go m.healthLoop(period)
	}
	return m
}

// Lease is one reserved TCS slot of an owner. Release it when the activation's sandbox is gone.
type Lease struct {
	Owner  Owner
	m      *Manager
	ticket pool.Ticket
	h      *ownerHandle
	once   sync.Once
}

// GateSocket is the host path of the owner's gate.
func (l *Lease) GateSocket() string { return l.Owner.GateSocket() }

// Dir is the owner's directory (it contains the gate socket).
func (l *Lease) Dir() string { return l.h.dir }

// Died is closed when the owner exited or was dropped as unhealthy. It is the evidence the executor
// classifies by: an activation whose gate connection broke while Died is closed failed through the
// platform's fault, not the action's (proxy.Reply.OwnerDied).
func (l *Lease) Died() <-chan struct{} { return l.h.dead }

// Lost says whether the owner is gone (Died is closed) and why: its exit ("exited: signal:
// killed"), failed health pings, or the manager closing. The reason names host internals, so it
// is for the invoker's log, not for the activation's record.
func (l *Lease) Lost() (reason string, lost bool) {
	select {
	case <-l.h.dead:
		return l.h.lost, true
	default:
		return "", false
	}
}

// Release returns the slot; it is idempotent.
func (l *Lease) Release() {
	l.once.Do(func() {
		l.m.mu.Lock()
		defer l.m.mu.Unlock()
		l.h.leases--
		if l.h.leases == 0 && l.h.idle != nil {
			close(l.h.idle) // a replaced owner's last activation ended: it may be stopped
		}
		l.m.applyLocked(l.m.core.Release(l.ticket))
	})
}

// Reserve returns a lease on a free slot of a warm owner of image, starting an owner when none has
// a free slot and another may be started (one start at a time per image), and otherwise waiting
// for a slot until ctx ends (ErrNoCapacity). An owner a prepare started in the background serves
// at normal priority from its first lease on.
func (m *Manager) Reserve(ctx context.Context, image string) (*Lease, error) {
	l, err := m.reserve(ctx, image)
	if err != nil {
		return nil, err
	}
	// A no-op for an owner not in the background (Owner.Foreground is idempotent).
	if ferr := l.Owner.Foreground(); ferr != nil {
		// It serves anyway, only slower while others are busy.
		m.log.Warn("moving a prepared enclave owner to normal CPU priority failed",
			zap.String("image", image), zap.String("enclave", l.Owner.ID()), zap.Error(ferr))
	}
	return l, nil
}

// reserve is Reserve without the move to normal priority (Prepare's reservation is no activation).
func (m *Manager) reserve(ctx context.Context, image string) (*Lease, error) {
	if image == "" {
		return nil, errors.New("reserve enclave: empty image")
	}
	ch := make(chan reply, 1)
	m.mu.Lock()
	t, acts := m.core.Reserve(image)
	m.waiters[t] = ch
	m.applyLocked(acts)
	m.mu.Unlock()
	select {
	case r := <-ch:
		return r.lease, r.err
	case <-ctx.Done():
	}
	m.mu.Lock()
	waiting := m.core.Cancel(t)
	if waiting {
		delete(m.waiters, t)
	}
	m.mu.Unlock()
	if !waiting {
		// Answered while ctx ended: the answer is in ch already.
		r := <-ch
		return r.lease, r.err
	}
	return nil, fmt.Errorf("%w for %s: %w", ErrNoCapacity, image, ctx.Err())
}

// applyLocked performs the pool's actions, in order; m.mu is held. Whatever blocks (starting,
// stopping and pinging owners) happens in goroutines that report back under m.mu.
func (m *Manager) applyLocked(acts []pool.Action) {
	for _, a := range acts {
		switch a := a.(type) {
		case pool.Grant:
			h := m.owners[a.Owner]
			l := &Lease{Owner: h.owner, m: m, ticket: a.Ticket, h: h}
			m.answerLocked(a.Ticket, reply{lease: l})
		case pool.Reject:
			err := a.Err
			if a.Cause == pool.Closed {
				err = ErrClosed
			}
			m.answerLocked(a.Ticket, reply{err: err})
		case pool.StartOwner:
			m.wg.Add(1)
			go m.start(a)
		case pool.StopOwner:
			if h := m.owners[a.Owner]; h.refused {
				// Replaced for its refused key: its activations in flight finish first.
				delete(m.owners, a.Owner)
				m.wg.Add(1)
				go m.retireReplaced(h)
				continue
			}
			h := m.dropLocked(a.Owner, a.Reason)
			m.wg.Add(1)
			go m.retire(h, a)
		case pool.PingOwner:
			m.wg.Add(1)
			go m.ping(a.Owner, m.owners[a.Owner].owner.GateSocket())
		}
	}
}

// dropLocked forgets an owner the pool dropped and tells its leases why; m.mu is held.
func (m *Manager) dropLocked(id, reason string) *ownerHandle {
	h := m.owners[id]
	delete(m.owners, id)
	h.lost = reason
	close(h.dead)
	return h
}

func (m *Manager) answerLocked(t pool.Ticket, r reply) {
	ch, ok := m.waiters[t]
	if !ok {
		// The pool answers only waiting tickets, and a ticket stops waiting in the pool and here
		// under the same lock; a grant nobody waits for would leak its slot, so give it back.
		if r.lease != nil {
			m.applyLocked(m.core.Release(t))
		}
		return
	}
	delete(m.waiters, t)
	if r.lease != nil {
		r.lease.h.leases++
	}
	ch <- r
}

// start starts the owner a names and reports the outcome to the pool. The start is not cancelled
// with the reservation that asked for it: others may be waiting for it (the backend bounds it with
// its own start timeout, and Close cancels it).
func (m *Manager) start(a pool.StartOwner) {
	defer m.wg.Done()
	dir := filepath.Join(m.cfg.BaseDir, a.Owner)
	t0 := time.Now()
	spec := StartSpec{ID: a.Owner, Image: a.Image, Dir: dir, Slots: m.cfg.SlotsPerOwner, Isolate: m.cfg.Isolate,
		IsolateReuse: m.cfg.IsolateReuse, PagePoolMB: m.cfg.PagePoolMB}
	m.mu.Lock()
	from, prepared := m.prepared[a.Image]
	delete(m.prepared, a.Image)
	m.mu.Unlock()
	spec.Background = prepared
	if !prepared {
		from = -1
	}
	var owner Owner
	var err error
	if peer, ok := m.keyPeer(a.Peer); ok {
		owner, err = m.startWithTransfer(spec, a.Peer, peer)
	} else if m.heldElsewhere(a.Image) {
		owner, err = m.startWithRelay(spec, from)
	} else {
		owner, err = m.backend.Start(m.base, spec)
	}
	took := time.Since(t0)
	m.mu.Lock()
	if err != nil {
		err = fmt.Errorf("start enclave owner for %s: %w", a.Image, err)
		closed := m.closed
		m.applyLocked(m.core.StartFailed(a.Owner, err))
		m.mu.Unlock()
		if a.Ticket == 0 && !closed {
			// A prestart (or restart) has no caller to return the error to.
			m.log.Error("prestart of enclave owner failed", zap.String("image", a.Image), zap.Error(err))
		}
		if h := m.cfg.Hooks.StartFailed; h != nil {
			h(a.Image, err)
		}
		return
	}
	h := &ownerHandle{image: a.Image, owner: owner, dir: dir, dead: make(chan struct{}), offered: make(chan struct{})}
	if m.cfg.Hooks.Evidence == nil {
		close(h.offered)
	}
	m.owners[a.Owner] = h
	m.wg.Add(1)
	go m.watch(h)
	m.applyLocked(m.core.OwnerStarted(a.Owner))
	m.mu.Unlock()
	m.log.Info("enclave owner ready", zap.String("image", a.Image), zap.String("enclave", a.Owner),
		zap.String("backend", m.backend.Name()), zap.Duration("took", took))
	if hook := m.cfg.Hooks.OwnerStarted; hook != nil {
		hook(a.Image, took)
	}
	m.offerEvidence(h)
}

// keyPeer returns the gate of the live owner id (pool.StartOwner.Peer), if it is still there.
func (m *Manager) keyPeer(id string) (gate.KeyEndpoint, bool) {
	if id == "" {
		return gate.KeyEndpoint{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.owners[id]
	if !ok {
		return gate.KeyEndpoint{}, false
	}
	return keyEndpoint(h.owner), true
}

func keyEndpoint(o Owner) gate.KeyEndpoint {
	e := gate.KeyEndpoint{Socket: o.GateSocket()}
	if k, ok := o.(gate.KeyHolder); ok {
		e.Key = k.GateKey()
	}
	return e
}

// transferTimeout bounds one key transfer (three gate calls, two HPKE operations and two
// evidence checks in the owners: milliseconds). A state transfer's start (the request and the
// offer) is bounded the same; its chunks by stateTimeout (32 MiB of opened code at most: seconds).
const (
	transferTimeout = 10 * time.Second
	stateTimeout    = 60 * time.Second
)

// startWithTransfer starts an owner that awaits the image key and relays the key to it from the
// live owner peer (ciphertext only: gate.TransferKey). The owner joins the pool only with a key, so
// no activation runs on an owner without one. When the transfer fails (the peer died meanwhile,
// its evidence did not match), the owner is restarted to unseal or make the key itself: the image
// then keeps serving, and the failure is logged.
func (m *Manager) startWithTransfer(spec StartSpec, peerID string, peer gate.KeyEndpoint) (Owner, error) {
	spec.KeyMode = KeyAwait
	owner, err := m.backend.Start(m.base, spec)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(m.base, stateTimeout)
	src := &GateSource{Ep: peer}
	mv, err := MoveState(ctx, keyEndpoint(owner), src)
	src.Close()
	cancel()
	if err == nil {
		m.stateMoved(spec, peerID, mv)
		return owner, nil
	}
	return m.keyFallback(spec, owner, "image state transfer failed", err)
}

// stateMoved logs a state transfer into the owner spec names and tells the hooks.
func (m *Manager) stateMoved(spec StartSpec, peerID string, mv *StateMove) {
	from := peerID
	if from == "" {
		from = "another invoker"
	}
	m.log.Info("image state transferred", zap.String("image", spec.Image), zap.String("enclave", spec.ID),
		zap.String("from", from), zap.String("kid", mv.Kid), zap.Int("chunks", mv.Chunks), zap.Int64("bytes", mv.Bytes),
		zap.Int("codeEntries", mv.Entries), zap.Int("resumes", mv.Resumes), zap.Int64("senderPeakBytes", mv.SenderPeak),
		zap.Int64("receiverPeakBytes", mv.ReceiverPeak), zap.Int64("senderRSS", mv.SenderRSS), zap.Duration("took", mv.Took))
	if hook := m.cfg.Hooks.KeyTransferred; hook != nil {
		hook(spec.Image, spec.ID, peerID, &gate.Transfer{Kid: mv.Kid, Request: mv.Request, Offer: mv.Offer})
	}
	if hook := m.cfg.Hooks.StateMoved; hook != nil {
		hook(spec.Image, spec.ID, peerID, mv)
	}
}

// keyFallback keeps an awaiting owner whose transfer failed (with err) serving: with the key the
// backend gave it anyway, or restarted to unseal or make the key itself. what says which transfer.
func (m *Manager) keyFallback(spec StartSpec, owner Owner, what string, err error) (Owner, error) {
	// A backend that cannot start an owner without a key (StartSpec.KeyMode) started it with one:
	// it serves with that key rather than pay a second enclave start.
	pctx, pcancel := context.WithTimeout(m.base, m.cfg.PingTimeout)
	pong, perr := gate.Ping(pctx, owner.GateSocket())
	pcancel()
	if perr == nil && pong.Kid != "" {
		m.log.Warn("image key transfer failed; the owner keeps an image key of its own",
			zap.String("image", spec.Image), zap.String("enclave", spec.ID), zap.String("kid", pong.Kid), zap.Error(err))
		return owner, nil
	}
	m.log.Error(what+"; restarting the owner to unseal or make the key itself",
		zap.String("image", spec.Image), zap.String("enclave", spec.ID), zap.Error(err))
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	stopErr := owner.Stop(sctx)
	scancel()
	if stopErr != nil {
		return nil, fmt.Errorf("%s: %w; stopping the owner: %w", what, err, stopErr)
	}
	spec.KeyMode = KeyGenerate
	return m.backend.Start(m.base, spec)
}

// relayTimeout bounds a key transfer from another invoker: the controller queues the request until
// that invoker's next poll (it long-polls, so at once while it is up), then the offer comes back
// the same way. A publisher that does not answer in this time is taken for gone.
const relayTimeout = 10 * time.Second

// heldElsewhere asks Keys whether another healthy invoker holds image's key; no answer (an
// unreachable controller) counts as no, so the owner starts the way it would alone.
func (m *Manager) heldElsewhere(image string) bool {
	if m.cfg.Keys == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(m.base, m.cfg.PingTimeout)
	defer cancel()
	held, err := m.cfg.Keys.HeldElsewhere(ctx, image)
	if err != nil {
		m.log.Warn("cannot ask which invoker holds the image key; the owner unseals or makes its own",
			zap.String("image", image), zap.Error(err))
		return false
	}
	return held
}

// startWithRelay starts an owner that awaits the image key and takes it from another invoker's
// owner through Keys: key-request here, key-offer there, key-import here. When that invoker does
// not answer within relayTimeout (it died, or its owner refused this one's evidence), the owner
// unseals or makes the key itself (keyFallback), and says so in the log.
func (m *Manager) startWithRelay(spec StartSpec, prefer int) (Owner, error) {
	spec.KeyMode = KeyAwait
	owner, err := m.backend.Start(m.base, spec)
	if err != nil {
		return nil, err
	}
	if sr, ok := m.cfg.Keys.(StateRelay); ok {
		return m.moveFromRelay(spec, owner, sr, prefer)
	}
	ctx, cancel := context.WithTimeout(m.base, relayTimeout)
	defer cancel()
	to := keyEndpoint(owner)
	var t gate.Transfer
	req, err := gate.RequestKey(ctx, to)
	if err == nil {
		t.Request = req
		t.Offer, err = m.cfg.Keys.Relay(ctx, spec.Image, req)
	}
	if err == nil {
		t.Kid, err = gate.ImportKey(ctx, to, t.Offer)
	}
	if err != nil {
		return m.keyFallback(spec, owner, fmt.Sprintf("image key transfer from another invoker failed (bound %s)", relayTimeout), err)
	}
	m.log.Info("image key transferred from another invoker", zap.String("image", spec.Image),
		zap.String("enclave", spec.ID), zap.String("kid", t.Kid))
	if hook := m.cfg.Hooks.KeyTransferred; hook != nil {
		hook(spec.Image, spec.ID, "", &t)
	}
	return owner, nil
}

// StateRelay is a KeyRelay that also carries state transfers between invokers: the new owner here
// takes the key and the opened code of a holder's owner in chunks (MoveState).
type StateRelay interface {
	// StateSource is the owner of another invoker holding image's key, as a state sender; its
	// session sticks to the invoker that made the offer. prefer is the invoker to take the state
	// from when it holds the key (a drain's source, whose enclave has the image's warm state), or
	// -1 for any holder; a preferred invoker that holds no key leaves the choice to the relay.
	StateSource(image string, prefer int) StateSource
}

// moveFromRelay starts the owner's state transfer from another invoker: its start (the request
// to the holder and the offer back) within relayTimeout, the chunks within stateTimeout; a failure
// falls back as the key transfer does.
func (m *Manager) moveFromRelay(spec StartSpec, owner Owner, sr StateRelay, prefer int) (Owner, error) {
	ctx, cancel := context.WithTimeout(m.base, stateTimeout)
	defer cancel()
	src := &boundedOffer{StateSource: sr.StateSource(spec.Image, prefer)}
	mv, err := MoveState(ctx, keyEndpoint(owner), src)
	if err != nil {
		return m.keyFallback(spec, owner, fmt.Sprintf("image key transfer from another invoker failed (bound %s)", relayTimeout), err)
	}
	m.stateMoved(spec, "", mv)
	return owner, nil
}

// boundedOffer bounds a source's Offer by relayTimeout: a holder that does not answer is taken for
// gone then, as with the key transfer, while the chunks may take up to stateTimeout.
type boundedOffer struct{ StateSource }

func (b *boundedOffer) Offer(ctx context.Context, request json.RawMessage) (*gate.StateOffer, error) {
	ctx, cancel := context.WithTimeout(ctx, relayTimeout)
	defer cancel()
	return b.StateSource.Offer(ctx, request)
}

// keyEndpoints returns the owners of image here, by id, with their gate endpoints for the key
// messages.
func (m *Manager) keyEndpoints(image string) ([]string, []gate.KeyEndpoint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id, h := range m.owners {
		if h.image == image {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	eps := make([]gate.KeyEndpoint, len(ids))
	for i, id := range ids {
		eps[i] = keyEndpoint(m.owners[id].owner)
	}
	return ids, eps
}

// OfferKey answers another invoker's key-request for image with the key-offer of an owner of image
// here (the first that offers one). ErrNoOwner when none runs here.
func (m *Manager) OfferKey(ctx context.Context, image string, request json.RawMessage) (json.RawMessage, error) {
	ids, eps := m.keyEndpoints(image)
	if len(eps) == 0 {
		return nil, fmt.Errorf("offer image key of %s: %w", image, ErrNoOwner)
	}
	var errs []error
	for i, e := range eps {
		offer, err := gate.OfferKey(ctx, e, request)
		if err == nil {
			return offer, nil
		}
		errs = append(errs, fmt.Errorf("offer image key of %s from %s: %w", image, ids[i], err))
		if gate.IsClass(err, gate.ClassKey) {
			break // the owner refused the request (evidence): another owner of the image would too
		}
	}
	return nil, errors.Join(errs...)
}

// RotateKey gives image a new image key: the first of its owners here makes it, the others take it
// by transfer (each keeps its previous key for the grace, like the first). It returns the new kid
// and the previous one. Other invokers' owners keep the previous key (CONFIDENTIALITY.md, "Key
// lifecycle").
func (m *Manager) RotateKey(ctx context.Context, image string) (kid, previous string, err error) {
	ids, eps := m.keyEndpoints(image)
	if len(eps) == 0 {
		return "", "", fmt.Errorf("rotate image key of %s: %w", image, ErrNoOwner)
	}
	if kid, previous, err = gate.RotateKey(ctx, eps[0]); err != nil {
		return "", "", fmt.Errorf("rotate image key of %s on %s: %w", image, ids[0], err)
	}
	var errs []error
	for i, e := range eps[1:] {
		if _, err := gate.TransferKey(ctx, e, eps[0]); err != nil {
			errs = append(errs, fmt.Errorf("rotate image key of %s: transfer to %s: %w", image, ids[i+1], err))
		}
	}
	m.log.Info("image key rotated", zap.String("image", image), zap.String("kid", kid),
		zap.String("previous", previous), zap.Int("owners", len(eps)), zap.Int("failed", len(errs)))
	return kid, previous, errors.Join(errs...)
}

// watch reports the owner's exit to the pool.
func (m *Manager) watch(h *ownerHandle) {
	defer m.wg.Done()
	select {
	case <-h.owner.Done():
		m.mu.Lock()
		m.applyLocked(m.core.OwnerExited(h.owner.ID(), h.owner.Err()))
		m.mu.Unlock()
	case <-m.stop:
	}
}

// retire stops an owner the pool dropped and removes its directory.
func (m *Manager) retire(h *ownerHandle, a pool.StopOwner) {
	defer m.wg.Done()
	switch {
	case a.Idle:
		m.log.Info("enclave owner retired", zap.String("image", a.Image), zap.String("enclave", a.Owner),
			zap.String("reason", a.Reason))
	case !a.Closing:
		m.log.Warn("enclave owner dropped", zap.String("image", a.Image), zap.String("enclave", a.Owner),
			zap.String("reason", a.Reason), zap.Int("leases", a.Leases))
		if hook := m.cfg.Hooks.OwnerDropped; hook != nil {
			hook(a.Image, a.Owner, a.Reason)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.owner.Stop(ctx); err != nil {
		m.log.Error("stopping enclave owner failed", zap.String("enclave", a.Owner), zap.Error(err))
		return
	}
	if err := os.RemoveAll(h.dir); err != nil {
		m.log.Warn("removing enclave owner directory failed", zap.String("dir", h.dir), zap.Error(err))
	}
}

// ping health-pings one owner and reports the answer to the pool.
func (m *Manager) ping(id, socket string) {
	defer m.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.PingTimeout)
	_, err := gate.Ping(ctx, socket)
	cancel()
	m.mu.Lock()
	m.applyLocked(m.core.PingResult(id, err))
	h := m.owners[id]
	m.mu.Unlock()
	if err == nil && h != nil {
		m.offerEvidence(h)
	}
}

// offerEvidence fetches the evidence the owner serves and hands it to Hooks.Evidence when it is
// new. Failures are logged once per run of failures: an owner without an image key (it waits for
// a transfer) or an unreachable controller is asked again at the next ping. A refused key
// (ErrKeyRefused) is not asked again: the owner is replaced (replaceRefused).
func (m *Manager) offerEvidence(h *ownerHandle) {
	hook := m.cfg.Hooks.Evidence
	if hook == nil {
		return
	}
	h.evMu.Lock()
	defer h.evMu.Unlock()
	// Whatever the answer, the first one ends Prepare's wait; a refusal is recorded first.
	defer h.offerOnce.Do(func() { close(h.offered) })
	ctx, cancel := context.WithTimeout(m.base, m.cfg.PingTimeout)
	ev, err := gate.Evidence(ctx, h.owner.GateSocket())
	cancel()
	if err == nil && bytes.Equal(ev, h.evidence) {
		return
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(m.base, 10*time.Second)
		err = hook(ctx, h.image, ev)
		cancel()
	}
	if errors.Is(err, ErrKeyRefused) {
		m.replaceRefused(h, err)
		return
	}
	if err != nil {
		if !h.evFailing && m.base.Err() == nil {
			level := zap.WarnLevel
			if gate.IsClass(err, gate.ClassUnavailable) {
				level = zap.InfoLevel // no image key yet (e.g. waiting for a transfer): expected
			}
			m.log.Log(level, "enclave evidence not published; trying again at the next ping", zap.String("image", h.image),
				zap.String("enclave", h.owner.ID()), zap.Error(err))
		}
		h.evFailing = true
		return
	}
	h.evidence, h.evFailing = ev, false
	m.mu.Lock()
	replaced := m.refusals[h.image]
	delete(m.refusals, h.image)
	m.mu.Unlock()
	m.log.Info("enclave evidence published", zap.String("image", h.image), zap.String("enclave", h.owner.ID()),
		zap.Int("bytes", len(ev)), zap.Int("replacedForRefusedKey", replaced))
}

// replaceRefused replaces the owners of h's image here after the controller refused h's image key
// (err): another, healthy invoker holds the image's published key, the one clients seal to, so
// an activation here must not run with another. The owners of one image here share its key, so
// all of them go: the pool drops them (it then starts the image's owner again, which takes the
// published key through Keys: start, startWithRelay), they get no new leases, and each is stopped
// once its activations in flight have ended (retireReplaced). A reservation made here restarts
// the image at once, so that it is warm again without waiting for its next activation.
func (m *Manager) replaceRefused(h *ownerHandle, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || h.refused || m.owners[h.owner.ID()] != h {
		return // closing, or dropped meanwhile (replaced with another owner, died)
	}
	var ids []string
	for id, o := range m.owners {
		if o.image == h.image {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	m.refusals[h.image]++
	fields := []zap.Field{zap.String("image", h.image), zap.String("enclave", h.owner.ID()),
		zap.Strings("replaced", ids), zap.Error(err)}
	if n := m.refusals[h.image]; n == 1 {
		m.log.Warn("the controller refused the owner's image key (another invoker holds the published one): "+
			"replacing the image's owners here with ones that take the published key", fields...)
	} else {
		m.log.Error("the controller refused the image key of a replacement owner too: it could not take the "+
			"published key (see the key transfer's error above); replacing it again", append(fields, zap.Int("times", n))...)
	}
	for _, id := range ids {
		o := m.owners[id]
		o.refused = true
		o.idle = make(chan struct{})
		if o.leases == 0 {
			close(o.idle)
		}
		m.applyLocked(m.core.OwnerExited(id, fmt.Errorf("replaced: %w", err)))
	}
	m.wg.Add(1)
	go m.rewarm(h.image)
}

// rewarm makes image warm again after its owners were replaced: a reservation starts an owner
// unless the pool started one already (a prestarted image, a waiting activation).
func (m *Manager) rewarm(image string) {
	defer m.wg.Done()
	ctx, cancel := context.WithTimeout(m.base, stateTimeout+relayTimeout)
	defer cancel()
	l, err := m.Reserve(ctx, image)
	if err != nil {
		if m.base.Err() == nil {
			m.log.Error("restarting the image's owner after its key was refused failed; its next activation starts one",
				zap.String("image", image), zap.Error(err))
		}
		return
	}
	l.Release()
}

// retireReplaced stops an owner replaced for its refused key once its last lease is released (or
// the manager closes), and removes its directory.
func (m *Manager) retireReplaced(h *ownerHandle) {
	defer m.wg.Done()
	lost := "replaced: its image key was refused"
	select {
	case <-h.idle:
	case <-m.stop:
	case <-h.owner.Done():
		// It died under its last activations: they learn so, as from any owner's death.
		lost = fmt.Sprintf("exited: %v", h.owner.Err())
	}
	m.mu.Lock()
	h.lost = lost
	close(h.dead)
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.owner.Stop(ctx); err != nil {
		m.log.Error("stopping a replaced enclave owner failed", zap.String("enclave", h.owner.ID()), zap.Error(err))
		return
	}
	if err := os.RemoveAll(h.dir); err != nil {
		m.log.Warn("removing enclave owner directory failed", zap.String("dir", h.dir), zap.Error(err))
	}
	m.log.Info("replaced enclave owner stopped", zap.String("image", h.image), zap.String("enclave", h.owner.ID()))
}

// tickPeriod is how often the pool learns the time: every health interval, and often enough that
// an idle owner is retired at most a quarter of the idle timeout late (the pool sees time only in
// ticks). Zero: neither needs ticks.
func tickPeriod(health, idle time.Duration) time.Duration {
	period := max(health, 0)
	if idle > 0 {
		q := max(idle/4, 10*time.Millisecond)
		if period == 0 || q < period {
			period = q
		}
	}
	return period
}

// healthLoop tells the pool the time every period; it decides which pings are due and which owners
// are idle.
func (m *Manager) healthLoop(period time.Duration) {
	defer m.wg.Done()
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case now := <-t.C:
			m.mu.Lock()
			m.applyLocked(m.core.Tick(now))
			m.mu.Unlock()
		}
	}
}

// Close stops every owner; Reserve then fails with ErrClosed.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.stop)
	m.cancel()
	// Close stops the owners the pool drops now itself, bounded by ctx; the rest of the pool's
	// actions (rejecting the waiting reservations) go through applyLocked.
	var owners []*ownerHandle
	for _, a := range m.core.Close() {
		if s, ok := a.(pool.StopOwner); ok {
			owners = append(owners, m.dropLocked(s.Owner, s.Reason))
			continue
		}
		m.applyLocked([]pool.Action{a})
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(owners))
	for i, h := range owners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.owner.Stop(ctx); err != nil {
				errs[i] = fmt.Errorf("stop enclave owner %s: %w", h.owner.ID(), err)
			}
		}()
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("close enclave manager: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}
