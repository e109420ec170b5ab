package enclave

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

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
	// Isolate is passed to the backend ("addon", "worker" or "" for the best available).
	Isolate string
	// Hooks receive lifecycle events, e.g. for metrics; all optional.
	Hooks Hooks
}

// Hooks are optional callbacks; they must not block.
type Hooks struct {
	OwnerStarted func(image string, took time.Duration)
	StartFailed  func(image string, err error)
	OwnerDropped func(image, id, reason string)
}

// Manager keeps the warm owners, one set per image, and hands out leases on their TCS slots.
type Manager struct {
	backend  Backend
	cfg      ManagerConfig
	log      *zap.Logger
	prestart map[string]bool

	mu      sync.Mutex
	images  map[string]*imageState
	changed chan struct{} // closed and replaced on every change of slots or owners
	closed  bool
	seq     int
	stop    chan struct{}
	wg      sync.WaitGroup
}

type imageState struct {
	owners   []*ownerState
	starting int
	failGen  int
	lastErr  error
}

type ownerState struct {
	image     string
	owner     Owner
	dir       string
	slots     int
	inUse     int
	pingFails int
	dropped   bool
	dead      chan struct{}
}

// NewManager starts the health loop and the prestarted owners (in the background).
func NewManager(backend Backend, cfg ManagerConfig, log *zap.Logger) *Manager {
	if cfg.SlotsPerOwner <= 0 {
		cfg.SlotsPerOwner = 16
	}
	if cfg.MaxOwnersPerImage <= 0 {
		cfg.MaxOwnersPerImage = 1
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = 5 * time.Second
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 2 * time.Second
	}
	if cfg.PingFailures <= 0 {
		cfg.PingFailures = 2
	}
	m := &Manager{backend: backend, cfg: cfg, log: log, prestart: map[string]bool{},
		images: map[string]*imageState{}, changed: make(chan struct{}), stop: make(chan struct{})}
	for _, img := range cfg.Prestart {
		m.prestart[img] = true
		m.ensure(img)
	}
	if cfg.HealthInterval > 0 {
		m.wg.Add(1)
		go m.healthLoop()
	}
	return m
}

// Lease is one reserved TCS slot of an owner. Release it when the activation's sandbox is gone.
type Lease struct {
	Owner Owner
	m     *Manager
	o     *ownerState
	once  sync.Once
}

// GateSocket is the host path of the owner's gate.
func (l *Lease) GateSocket() string { return l.Owner.GateSocket() }

// Dir is the owner's directory (it contains the gate socket).
func (l *Lease) Dir() string { return l.o.dir }

// Died is closed when the owner exited or was dropped as unhealthy.
func (l *Lease) Died() <-chan struct{} { return l.o.dead }

// Release returns the slot; it is idempotent.
func (l *Lease) Release() {
	l.once.Do(func() {
		l.m.mu.Lock()
		l.o.inUse--
		l.m.notifyLocked()
		l.m.mu.Unlock()
	})
}

// Reserve returns a lease on a free slot of a warm owner of image, starting an owner when none has
// a free slot and another may be started (one start at a time per image), and otherwise waiting
// for a slot until ctx ends (ErrNoCapacity).
func (m *Manager) Reserve(ctx context.Context, image string) (*Lease, error) {
	if image == "" {
		return nil, errors.New("reserve enclave: empty image")
	}
	m.mu.Lock()
	for {
		if m.closed {
			m.mu.Unlock()
			return nil, ErrClosed
		}
		st := m.stateLocked(image)
		p := pickOwner(views(st.owners), st.starting, m.cfg.MaxOwnersPerImage)
		switch p.Kind {
		case pickUse:
			o := st.owners[p.Index]
			o.inUse++
			m.mu.Unlock()
			return &Lease{Owner: o.owner, m: m, o: o}, nil
		case pickStart:
			// Counted as starting before the lock is released, so concurrent callers wait for
			// this start instead of making their own.
			id := m.beginLaunchLocked(st, image)
			m.mu.Unlock()
			if err := m.launch(ctx, st, image, id); err != nil {
				return nil, err
			}
			m.mu.Lock()
		case pickWait:
			gen, ch := st.failGen, m.changed
			m.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, fmt.Errorf("%w for %s: %w", ErrNoCapacity, image, ctx.Err())
			}
			m.mu.Lock()
			if st.failGen != gen && st.starting == 0 && len(st.owners) == 0 {
				// The start this caller waited for failed; report it rather than retry in a loop.
				err := st.lastErr
				m.mu.Unlock()
				return nil, err
			}
		}
	}
}

func (m *Manager) stateLocked(image string) *imageState {
	st := m.images[image]
	if st == nil {
		st = &imageState{}
		m.images[image] = st
	}
	return st
}

func (m *Manager) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// beginLaunchLocked counts a start of an owner of image and names it; m.mu is held. launch does
// the start.
func (m *Manager) beginLaunchLocked(st *imageState, image string) string {
	st.starting++
	m.seq++
	return ownerID(image, m.seq)
}

// launch starts the owner beginLaunchLocked counted and adds it. The start is not cancelled with
// the caller's ctx: other callers may be waiting for it (the backend bounds it with its own start
// timeout).
func (m *Manager) launch(ctx context.Context, st *imageState, image, id string) error {
	dir := filepath.Join(m.cfg.BaseDir, id)
	t0 := time.Now()
	owner, err := m.backend.Start(context.WithoutCancel(ctx), StartSpec{ID: id, Image: image, Dir: dir,
		Slots: m.cfg.SlotsPerOwner, Isolate: m.cfg.Isolate})
	took := time.Since(t0)

	m.mu.Lock()
	st.starting--
	if err != nil {
		err = fmt.Errorf("start enclave owner for %s: %w", image, err)
		st.failGen++
		st.lastErr = err
		m.notifyLocked()
		m.mu.Unlock()
		if h := m.cfg.Hooks.StartFailed; h != nil {
			h(image, err)
		}
		return err
	}
	o := &ownerState{image: image, owner: owner, dir: dir, slots: m.cfg.SlotsPerOwner, dead: make(chan struct{})}
	if m.closed {
		m.mu.Unlock()
		m.stopOwner(o)
		return ErrClosed
	}
	st.owners = append(st.owners, o)
	m.notifyLocked()
	m.wg.Add(1)
	m.mu.Unlock()
	go m.watch(o)
	m.log.Info("enclave owner ready", zap.String("image", image), zap.String("enclave", id),
		zap.String("backend", m.backend.Name()), zap.Duration("took", took))
	if h := m.cfg.Hooks.OwnerStarted; h != nil {
		h(image, took)
	}
	return nil
}

// ensure starts an owner of a prestarted image in the background unless one runs or is starting.
func (m *Manager) ensure(image string) {
	m.mu.Lock()
	st := m.stateLocked(image)
	if m.closed || len(st.owners) > 0 || st.starting > 0 {
		m.mu.Unlock()
		return
	}
	id := m.beginLaunchLocked(st, image)
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		if err := m.launch(context.Background(), st, image, id); err != nil && !errors.Is(err, ErrClosed) {
			m.log.Error("prestart of enclave owner failed", zap.String("image", image), zap.Error(err))
		}
	}()
}

func ownerID(image string, seq int) string {
	var b strings.Builder
	for _, r := range image {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String() + "-" + strconv.Itoa(seq)
}

// watch drops the owner when its process exits.
func (m *Manager) watch(o *ownerState) {
	defer m.wg.Done()
	select {
	case <-o.owner.Done():
		m.drop(o, fmt.Sprintf("exited: %v", o.owner.Err()))
	case <-m.stop:
	}
}

// drop removes an owner: its leases see Died, it is stopped, and a prestarted image gets a new one.
func (m *Manager) drop(o *ownerState, reason string) {
	m.mu.Lock()
	if o.dropped {
		m.mu.Unlock()
		return
	}
	o.dropped = true
	st := m.images[o.image]
	for i, x := range st.owners {
		if x == o {
			st.owners = append(st.owners[:i:i], st.owners[i+1:]...)
			break
		}
	}
	close(o.dead)
	m.notifyLocked()
	restart := m.prestart[o.image] && !m.closed
	leases := o.inUse
	m.mu.Unlock()
	m.log.Warn("enclave owner dropped", zap.String("image", o.image), zap.String("enclave", o.owner.ID()),
		zap.String("reason", reason), zap.Int("leases", leases))
	if h := m.cfg.Hooks.OwnerDropped; h != nil {
		h(o.image, o.owner.ID(), reason)
	}
	m.stopOwner(o)
	if restart {
		m.ensure(o.image)
	}
}

func (m *Manager) stopOwner(o *ownerState) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.owner.Stop(ctx); err != nil {
		m.log.Error("stopping enclave owner failed", zap.String("enclave", o.owner.ID()), zap.Error(err))
		return
	}
	if err := os.RemoveAll(o.dir); err != nil {
		m.log.Warn("removing enclave owner directory failed", zap.String("dir", o.dir), zap.Error(err))
	}
}

func (m *Manager) healthLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		m.mu.Lock()
		var owners []*ownerState
		for _, st := range m.images {
			owners = append(owners, st.owners...)
		}
		m.mu.Unlock()
		for _, o := range owners {
			ctx, cancel := context.WithTimeout(context.Background(), m.cfg.PingTimeout)
			_, err := gate.Ping(ctx, o.owner.GateSocket())
			cancel()
			m.mu.Lock()
			if err == nil {
				o.pingFails = 0
				m.mu.Unlock()
				continue
			}
			o.pingFails++
			fails := o.pingFails
			m.mu.Unlock()
			if fails >= m.cfg.PingFailures {
				m.drop(o, fmt.Sprintf("%d health pings failed, last: %v", fails, err))
			}
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
	var owners []*ownerState
	for _, st := range m.images {
		for _, o := range st.owners {
			o.dropped = true
			close(o.dead)
			owners = append(owners, o)
		}
		st.owners = nil
	}
	m.notifyLocked()
	m.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(owners))
	for i, o := range owners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := o.owner.Stop(ctx); err != nil {
				errs[i] = fmt.Errorf("stop enclave owner %s: %w", o.owner.ID(), err)
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

// ---- the decision ------------------------------------------------------------------------

type ownerView struct {
	Free    int  // slots not leased
	Suspect bool // the last health ping failed
}

type pickKind int

const (
	pickUse   pickKind = iota // lease a slot of owners[Index]
	pickStart                 // start another owner
	pickWait                  // wait for a slot or for the owner being started
)

type pick struct {
	Kind  pickKind
	Index int
}

// pickOwner decides where an activation goes: the owner with the most free slots (spreading load
// over owners), preferring owners whose last ping succeeded; else start an owner when fewer than
// maxOwners run and none is starting; else wait.
func pickOwner(owners []ownerView, starting, maxOwners int) pick {
	best := -1
	for i, o := range owners {
		if o.Free <= 0 {
			continue
		}
		if best < 0 || (owners[best].Suspect && !o.Suspect) ||
			(owners[best].Suspect == o.Suspect && o.Free > owners[best].Free) {
			best = i
		}
	}
	if best >= 0 {
		return pick{Kind: pickUse, Index: best}
	}
	if starting == 0 && len(owners) < maxOwners {
		return pick{Kind: pickStart}
	}
	return pick{Kind: pickWait}
}

func views(owners []*ownerState) []ownerView {
	v := make([]ownerView, len(owners))
	for i, o := range owners {
		v[i] = ownerView{Free: o.slots - o.inUse, Suspect: o.pingFails > 0}
	}
	return v
}
