package pool

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config of a pool. Zero values take the defaults noted.
type Config struct {
	// SlotsPerOwner is the TCS slots each owner offers (16 by default).
	SlotsPerOwner int
	// MaxOwnersPerImage bounds the owners of one image (1 by default); above 1, a further owner is
	// started when every owner of the image is full.
	MaxOwnersPerImage int
	// Prestart lists images whose owner starts with the pool and is restarted at once when it dies.
	Prestart []string
	// HealthInterval is the period of health pings; zero or negative: no pings.
	HealthInterval time.Duration
	// PingFailures is how many pings in a row may fail before the owner is dropped (2 by default):
	// a single slow answer under load should not kill an owner serving many activations.
	PingFailures int
	// IdleTimeout retires an owner of an image not in Prestart that has had no lease for this long
	// (its memory, and its EPC on sgx, go back to the host; the image's next reservation starts an
	// owner again, as OpenWhisk reclaims idle containers). Zero or negative: owners stay. The
	// core learns the time from Tick only, so an owner is retired at the first Tick at least
	// IdleTimeout after the Tick that first saw it idle: never early, late by one Tick period at
	// most.
	IdleTimeout time.Duration
}

// Ticket names one reservation; once granted it names the lease until Release.
type Ticket uint64

// Pool is the decision core. See the package documentation.
type Pool struct {
	cfg      Config
	prestart map[string]bool
	images   map[string]*image
	order    []string // images in the order first seen, for deterministic actions
	owners   map[string]*owner
	starts   map[string]start // owners being started, by id
	leases   map[Ticket]*owner
	tickets  Ticket
	seq      int
	closed   bool
	nextPing time.Time
	now      time.Time // the last Tick's time (New's before the first)
}

type image struct {
	name     string
	owners   []*owner // in start order
	starting int
	waiting  []Ticket // FIFO
}

type owner struct {
	id, image string
	slots     int
	inUse     int
	pingFails int
	pinging   bool
	gone      bool
	// used: granted, released or started since the last Tick; usedAt: the last Tick that saw the
	// owner leased or used (its idle time counts from there).
	used   bool
	usedAt time.Time
}

type start struct {
	image  string
	ticket Ticket // the reservation that asked for the start; 0 for a prestart
}

// New makes a pool; now is the time the health pings count from.
func New(cfg Config, now time.Time) *Pool {
	if cfg.SlotsPerOwner <= 0 {
		cfg.SlotsPerOwner = 16
	}
	if cfg.MaxOwnersPerImage <= 0 {
		cfg.MaxOwnersPerImage = 1
	}
	if cfg.PingFailures <= 0 {
		cfg.PingFailures = 2
	}
	p := &Pool{cfg: cfg, prestart: map[string]bool{}, images: map[string]*image{}, owners: map[string]*owner{},
		starts: map[string]start{}, leases: map[Ticket]*owner{}, now: now}
	for _, img := range cfg.Prestart {
		p.prestart[img] = true
	}
	if cfg.HealthInterval > 0 {
		p.nextPing = now.Add(cfg.HealthInterval)
	}
	return p
}

// Prestart starts an owner for every prestarted image that has none.
func (p *Pool) Prestart() []Action {
	var acts []Action
	for _, img := range p.cfg.Prestart {
		acts = p.ensure(p.image(img), acts)
	}
	return acts
}

// Reserve asks for a slot of an owner of img. The returned ticket is granted or rejected by this
// call's actions or by a later call's; until then it waits (Cancel withdraws it).
func (p *Pool) Reserve(img string) (Ticket, []Action) {
	p.tickets++
	t := p.tickets
	if p.closed {
		return t, []Action{Reject{Ticket: t, Image: img, Cause: Closed}}
	}
	im := p.image(img)
	im.waiting = append(im.waiting, t)
	return t, p.serve(im, nil)
}

// Cancel withdraws a waiting reservation and reports whether it was still waiting (false: it was
// granted or rejected already, by actions the caller has been given).
func (p *Pool) Cancel(t Ticket) bool {
	for _, im := range p.images {
		if i := slices.Index(im.waiting, t); i >= 0 {
			im.waiting = slices.Delete(im.waiting, i, i+1)
			return true
		}
	}
	return false
}

// Release returns a granted ticket's slot; releasing twice, or a lease on a dropped owner, is a
// no-op.
func (p *Pool) Release(t Ticket) []Action {
	o, ok := p.leases[t]
	if !ok {
		return nil
	}
	delete(p.leases, t)
	if o.gone {
		return nil
	}
	o.inUse--
	o.used = true
	return p.serve(p.images[o.image], nil)
}

// Touch counts img's owners as used now, as a lease would (they are about to get traffic: a
// drain's destination, an image key another invoker asks for), and reports whether img has one.
func (p *Pool) Touch(img string) bool {
	im := p.images[img]
	if im == nil {
		return false
	}
	for _, o := range im.owners {
		o.used = true
	}
	return len(im.owners) > 0
}

// OwnerStarted reports that a StartOwner succeeded: its slots go to the waiting reservations.
func (p *Pool) OwnerStarted(id string) []Action {
	s, ok := p.starts[id]
	if !ok {
		return nil
	}
	delete(p.starts, id)
	im := p.images[s.image]
	im.starting--
	if p.closed {
		return []Action{StopOwner{Image: s.image, Owner: id, Reason: "closed", Closing: true}}
	}
	o := &owner{id: id, image: s.image, slots: p.cfg.SlotsPerOwner, used: true, usedAt: p.now}
	im.owners = append(im.owners, o)
	p.owners[id] = o
	return p.serve(im, nil)
}

// StartFailed reports that a StartOwner failed with err. The reservation that asked for it is
// rejected with err; so are all others of the image when it has no owner and no other start is
// under way (a failure they would otherwise repeat). The others are served again.
func (p *Pool) StartFailed(id string, err error) []Action {
	s, ok := p.starts[id]
	if !ok {
		return nil
	}
	delete(p.starts, id)
	im := p.images[s.image]
	im.starting--
	if p.closed {
		return nil
	}
	var acts []Action
	reject := func(t Ticket) {
		acts = append(acts, Reject{Ticket: t, Image: im.name, Cause: StartFailed, Err: err})
	}
	if len(im.owners) == 0 && im.starting == 0 {
		for _, t := range im.waiting {
			reject(t)
		}
		im.waiting = nil
		return acts
	}
	if i := slices.Index(im.waiting, s.ticket); s.ticket != 0 && i >= 0 {
		im.waiting = slices.Delete(im.waiting, i, i+1)
		reject(s.ticket)
	}
	return p.serve(im, acts)
}

// OwnerExited reports that an owner's process ended (err says why): it is dropped.
func (p *Pool) OwnerExited(id string, err error) []Action {
	o, ok := p.owners[id]
	if !ok {
		return nil
	}
	return p.drop(o, StopOwner{Reason: fmt.Sprintf("exited: %v", err)})
}

// PingResult reports a PingOwner's answer: PingFailures failures in a row drop the owner, and an
// owner whose last ping failed gets reservations only when no other has room.
func (p *Pool) PingResult(id string, err error) []Action {
	o, ok := p.owners[id]
	if !ok {
		return nil
	}
	o.pinging = false
	if err == nil {
		o.pingFails = 0
		return nil
	}
	o.pingFails++
	if o.pingFails >= p.cfg.PingFailures {
		return p.drop(o, StopOwner{Reason: fmt.Sprintf("%d health pings failed, last: %v", o.pingFails, err)})
	}
	return nil
}

// Tick tells the pool the time. Owners idle for IdleTimeout are retired (StopOwner with Idle).
// When pings are due, every owner without a ping in flight gets one; intervals missed entirely are
// skipped, as a ticker drops ticks.
func (p *Pool) Tick(now time.Time) []Action {
	if p.closed {
		return nil
	}
	p.now = now
	acts := p.retireIdle(now)
	if p.cfg.HealthInterval <= 0 || now.Before(p.nextPing) {
		return acts
	}
	for !now.Before(p.nextPing) {
		p.nextPing = p.nextPing.Add(p.cfg.HealthInterval)
	}
	for _, name := range p.order {
		for _, o := range p.images[name].owners {
			if !o.pinging {
				o.pinging = true
				acts = append(acts, PingOwner{Owner: o.id})
			}
		}
	}
	return acts
}

// retireIdle stamps the owners used since the last Tick and retires those idle for IdleTimeout.
// A retired owner leaves the pool at once, under the caller's serialisation: a reservation
// decided after this call starts a new owner, and one decided before holds a lease (or granted
// and released one since the last Tick), which keeps the owner.
func (p *Pool) retireIdle(now time.Time) []Action {
	var acts []Action
	for _, name := range p.order {
		im := p.images[name]
		var idle []*owner
		for _, o := range im.owners {
			if o.used || o.inUse > 0 {
				o.used, o.usedAt = false, now
				continue
			}
			if idleOut(p.cfg.IdleTimeout, p.prestart[name], len(im.waiting), o.usedAt, now) {
				idle = append(idle, o)
			}
		}
		for _, o := range idle {
			acts = append(acts, p.drop(o, StopOwner{Reason: "idle for " + now.Sub(o.usedAt).String(), Idle: true})...)
		}
	}
	return acts
}

// idleOut decides whether an owner without leases, last used at usedAt, is retired at now.
// Prestarted images keep their owners; an image with reservations waiting keeps them too (a
// reservation waits only when every owner is full, so this guards a decision the caller could
// reorder, not a state the core reaches).
func idleOut(timeout time.Duration, prestarted bool, waiting int, usedAt, now time.Time) bool {
	return timeout > 0 && !prestarted && waiting == 0 && now.Sub(usedAt) >= timeout
}

// Close rejects every waiting reservation and stops every owner; later reservations are
// rejected, and owners whose start completes later are stopped.
func (p *Pool) Close() []Action {
	if p.closed {
		return nil
	}
	p.closed = true
	var acts []Action
	for _, name := range p.order {
		im := p.images[name]
		for _, t := range im.waiting {
			acts = append(acts, Reject{Ticket: t, Image: name, Cause: Closed})
		}
		im.waiting = nil
		for _, o := range im.owners {
			o.gone = true
			delete(p.owners, o.id)
			acts = append(acts, StopOwner{Image: name, Owner: o.id, Reason: "closed", Closing: true, Leases: o.inUse})
		}
		im.owners = nil
	}
	return acts
}

func (p *Pool) image(name string) *image {
	im := p.images[name]
	if im == nil {
		im = &image{name: name}
		p.images[name] = im
		p.order = append(p.order, name)
	}
	return im
}

// serve gives the image's waiting reservations slots, in order, starting an owner when the pick
// says so; it appends to acts.
func (p *Pool) serve(im *image, acts []Action) []Action {
	for len(im.waiting) > 0 {
		d := pickOwner(views(im.owners), im.starting, p.cfg.MaxOwnersPerImage)
		switch d.Kind {
		case pickUse:
			o := im.owners[d.Index]
			t := im.waiting[0]
			im.waiting = im.waiting[1:]
			o.inUse++
			o.used = true
			p.leases[t] = o
			acts = append(acts, Grant{Ticket: t, Image: im.name, Owner: o.id})
		case pickStart:
			acts = p.startOwner(im, im.waiting[0], acts)
		default:
			return acts
		}
	}
	return acts
}

// ensure starts an owner of a prestarted image unless one runs or is starting.
func (p *Pool) ensure(im *image, acts []Action) []Action {
	if p.closed || len(im.owners) > 0 || im.starting > 0 {
		return acts
	}
	return p.startOwner(im, 0, acts)
}

func (p *Pool) startOwner(im *image, t Ticket, acts []Action) []Action {
	im.starting++
	p.seq++
	id := ownerID(im.name, p.seq)
	p.starts[id] = start{image: im.name, ticket: t}
	a := StartOwner{Image: im.name, Owner: id, Ticket: t}
	// The image key comes from a live owner (the longest running, most likely to stay) when
	// there is one.
	if len(im.owners) > 0 {
		a.Peer = im.owners[0].id
	}
	return append(acts, a)
}

// drop takes an owner out of the pool: its leases learn it died, it is stopped (stop says why), a
// prestarted image gets a new owner, and the waiting reservations are served again.
func (p *Pool) drop(o *owner, stop StopOwner) []Action {
	im := p.images[o.image]
	o.gone = true
	delete(p.owners, o.id)
	im.owners = slices.DeleteFunc(im.owners, func(x *owner) bool { return x == o })
	stop.Image, stop.Owner, stop.Leases = o.image, o.id, o.inUse
	acts := []Action{stop}
	if p.prestart[o.image] {
		acts = p.ensure(im, acts)
	}
	return p.serve(im, acts)
}

// ownerID names the seq-th owner after its image: "nodejs:20" → "nodejs-20-3".
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

// String describes the pool, one image a line, for scenario tests and debugging.
func (p *Pool) String() string {
	var b strings.Builder
	if p.closed {
		b.WriteString("closed\n")
	}
	for _, name := range p.order {
		im := p.images[name]
		fmt.Fprintf(&b, "%s:", name)
		for _, o := range im.owners {
			fmt.Fprintf(&b, " %s %d/%d", o.id, o.inUse, o.slots)
			if o.pingFails > 0 {
				fmt.Fprintf(&b, " suspect(%d)", o.pingFails)
			}
			b.WriteString(";")
		}
		if im.starting > 0 {
			fmt.Fprintf(&b, " starting %d;", im.starting)
		}
		if len(im.waiting) > 0 {
			fmt.Fprintf(&b, " waiting %v;", im.waiting)
		}
		b.WriteString("\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// ---- the pick -----------------------------------------------------------------------------------

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

// pickOwner decides where a reservation goes: the owner with the most free slots (spreading load
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

func views(owners []*owner) []ownerView {
	v := make([]ownerView, len(owners))
	for i, o := range owners {
		v[i] = ownerView{Free: o.slots - o.inUse, Suspect: o.pingFails > 0}
	}
	return v
}
