package balancer

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Drain (issue #20): an operator takes an invoker out of service without failing or slowing
// anyone. Its images move one by one: for each image warm on the source (its pings list them),
// the destination is asked to prepare the image (Prepares, which the destination long-polls
// through the API), and only once the destination's pings report that image warm and holding the
// source's image key do new activations of it go there instead. Activations in flight finish where
// they are; the source is drained when no image is left to move and none of its activations is in
// flight. OpenWhisk's /disable (on the invoker) keeps its meaning: routing stops at once.

// Errors of Drain and Undrain; the API maps them to HTTP statuses.
var (
	// ErrNoSuchInvoker: no invoker with that instance number has pinged this controller.
	ErrNoSuchInvoker = errors.New("no such invoker")
	// ErrBadDestination: the destination named is not an up, undrained invoker other than the source.
	ErrBadDestination = errors.New("the destination cannot take the invoker's images")
	// ErrLastInvoker: no other invoker takes activations, and the drain was not forced.
	ErrLastInvoker = errors.New("it is the last invoker that takes activations")
)

// Drain states in GET /invokers (in place of "up" while an invoker drains or is drained).
const (
	StateDraining = "draining"
	StateDrained  = "drained"
)

// maxPrepares bounds the prepare requests kept for the destinations' polls (the oldest go first).
const maxPrepares = 1024

// Prepare is a request to invoker To to make Image warm before activations of it move there from
// invoker From. Seq orders the requests of one controller run (Epoch).
type Prepare struct {
	Seq   int64  `json:"seq"`
	Image string `json:"image"`
	From  int    `json:"from"`
	To    int    `json:"-"`
}

// DrainStatus is a drain's progress, as POST and GET /invokers/{id}/drain answer it.
type DrainStatus struct {
	// Invoker is the source's instance number.
	Invoker int `json:"invoker"`
	// State is "draining", "drained", or "serving" when the invoker does not drain.
	State string `json:"state"`
	// To is the destination asked for, -1 when the controller picks one per image.
	To    int  `json:"to"`
	Force bool `json:"force,omitempty"`
	// Moved maps each image moved away to the invoker its activations go to now (-1: none took it,
	// a forced drain of the last invoker).
	Moved map[string]int `json:"moved"`
	// Preparing is the image being prepared and where; Pending the images still to move.
	Preparing *PreparingImage `json:"preparing,omitempty"`
	Pending   []string        `json:"pending"`
	// InFlight is the source's activations of this controller not settled yet.
	InFlight int `json:"inFlight"`
	// Waiting says what the drain waits for, when it does.
	Waiting string `json:"waiting,omitempty"`
	// Warning says what fails because of the drain: a forced drain of the last invoker.
	Warning string `json:"warning,omitempty"`
	// Since is when the drain started (RFC 3339), empty when the invoker does not drain.
	Since string `json:"since,omitempty"`
	// NotMoved maps each image the drain gave up moving to why (its destination did not report it
	// warm and keyed within Config.PrepareTimeout): the source keeps serving it, and the invoker
	// is not drained until a new POST drain tries these images again or the image cools there.
	NotMoved map[string]string `json:"notMoved,omitempty"`
}

// PreparingImage is the image a drain waits for (DrainStatus.Preparing).
type PreparingImage struct {
	Image string `json:"image"`
	On    int    `json:"on"`
	// Seconds since the destination was asked.
	Seconds float64 `json:"seconds"`
}

// drain is one invoker's drain; every field under Balancer.mu.
type drain struct {
	to      int // asked for; -1: chosen per image
	force   bool
	started time.Time
	moved   map[string]int
	// current is the image being prepared on dest since asked.
	current string
	dest    int
	asked   time.Time
	drained bool
	waiting string
	// notMoved: images given up after Config.PrepareTimeout, with the reason.
	notMoved map[string]string
	// dirty says the persisted state (SavedDrain) lags behind: saved at the next tick.
	dirty bool
}

// serves says whether an invoker under drain d still takes activations of image: it is warm there
// and has not moved.
func (d *drain) serves(image string, warm map[string]string) bool {
	_, here := warm[image]
	_, moved := d.moved[image]
	return here && !moved
}

// Drained says how drains change the routing of one activation's image on one invoker: Avoid, it
// takes no more of it; To, the invoker the image moved to from it (-1: none).
type Drained struct {
	Avoid bool
	To    int
}

// Route is Schedule under drains (drained[i] for invoker i; nil: no drain). The placement Schedule
// makes is kept unless it lands on an invoker that avoids the image; then the activation goes to
// the invoker the image moved to (warm and keyed there), if that one is healthy, even without free
// memory; otherwise to Schedule's choice among the invokers that do not avoid it.
func Route(invokers []Candidate, drained []Drained, hash uint32, memoryMB int, random int) (Placement, error) {
	p, err := Schedule(invokers, hash, memoryMB, random)
	if err != nil || drained == nil || !drained[p.Invoker].Avoid {
		return p, err
	}
	if to := drained[p.Invoker].To; to >= 0 && to < len(invokers) && invokers[to].Healthy && !drained[to].Avoid {
		return Placement{Invoker: to, Forced: invokers[to].FreeMB < memoryMB}, nil
	}
	rest := slices.Clone(invokers)
	for i := range rest {
		if drained[i].Avoid {
			rest[i].Healthy = false
		}
	}
	return Schedule(rest, hash, memoryMB, random)
}

// drainedLocked is Route's view of the drains for image, nil when no invoker drains; b.mu is held.
func (b *Balancer) drainedLocked(image string) []Drained {
	var out []Drained
	for i, inv := range b.invokers {
		if inv.drain == nil || inv.drain.serves(image, inv.warm) {
			continue
		}
		if out == nil {
			out = make([]Drained, len(b.invokers))
			for j := range out {
				out[j].To = -1
			}
		}
		out[i].Avoid = true
		if to, ok := inv.drain.moved[image]; ok {
			out[i].To = to
		}
	}
	return out
}

// Drain starts draining invoker id towards to (-1: the controller picks a destination per image).
// The last invoker that takes activations is refused with ErrLastInvoker unless force. Draining an
// invoker that drains already changes nothing and answers its status.
func (b *Balancer) Drain(id, to int, force bool) (DrainStatus, error) {
	s, err := b.drain(id, to, force)
	if err != nil {
		return s, err
	}
	if err := b.saveDrains(); err != nil {
		return s, fmt.Errorf("invoker%d drains, but a controller restart would forget it: %w", id, err)
	}
	return s, nil
}

func (b *Balancer) drain(id, to int, force bool) (DrainStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if id < 0 || id >= len(b.invokers) || !b.invokers[id].pinged {
		return DrainStatus{}, fmt.Errorf("invoker%d: %w", id, ErrNoSuchInvoker)
	}
	src := b.invokers[id]
	if src.drain != nil {
		// Asked again: the images given up are tried once more (their destination may be
		// fixed now); the rest of the drain goes on as it was.
		if len(src.drain.notMoved) > 0 {
			b.log.Info("drain asked again: retrying the images not moved", zap.Int("invoker", id),
				zap.Int("images", len(src.drain.notMoved)))
			src.drain.notMoved = nil
			src.drain.dirty = true
			b.advanceDrainsLocked(b.cfg.Now())
		}
		return b.statusLocked(id), nil
	}
	if to >= 0 && !b.takesLocked(to, id) {
		return DrainStatus{}, fmt.Errorf("invoker%d cannot take invoker%d's images: it must be up and not drained: %w", to, id, ErrBadDestination)
	}
	others := 0
	for i := range b.invokers {
		if b.takesLocked(i, id) {
			others++
		}
	}
	if others == 0 && !force {
		return DrainStatus{}, fmt.Errorf("invoker%d cannot be drained: %w; drained, %s (force the drain to accept that)",
			id, ErrLastInvoker, lastInvokerConsequence(id))
	}
	src.drain = &drain{to: to, force: force, started: b.cfg.Now(), moved: map[string]int{}, dest: -1, dirty: true}
	b.log.Info("draining invoker", zap.Int("invoker", id), zap.Int("to", to), zap.Bool("force", force),
		zap.Int("warm_images", len(src.warm)))
	b.advanceDrainsLocked(b.cfg.Now())
	return b.statusLocked(id), nil
}

// lastInvokerConsequence says what fails while invoker id, the last one taking activations, is
// drained.
func lastInvokerConsequence(id int) string {
	return fmt.Sprintf("every new activation is answered 503 %q until invoker%d is undrained or another invoker comes up",
		ErrNoInvokers.Error(), id)
}

// Undrain ends invoker id's drain: its images' activations come back to it by the usual rule.
func (b *Balancer) Undrain(id int) (DrainStatus, error) {
	s, err := b.undrain(id)
	if err != nil {
		return s, err
	}
	if err := b.saveDrains(); err != nil {
		return s, fmt.Errorf("invoker%d is undrained, but a controller restart would drain it again: %w", id, err)
	}
	return s, nil
}

func (b *Balancer) undrain(id int) (DrainStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if id < 0 || id >= len(b.invokers) || !b.invokers[id].pinged {
		return DrainStatus{}, fmt.Errorf("invoker%d: %w", id, ErrNoSuchInvoker)
	}
	if b.invokers[id].drain != nil {
		b.invokers[id].drain = nil
		b.undrained[id] = true
		b.log.Info("invoker undrained", zap.Int("invoker", id))
	}
	return b.statusLocked(id), nil
}

// DrainStatusOf is invoker id's drain progress.
func (b *Balancer) DrainStatusOf(id int) (DrainStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if id < 0 || id >= len(b.invokers) || !b.invokers[id].pinged {
		return DrainStatus{}, fmt.Errorf("invoker%d: %w", id, ErrNoSuchInvoker)
	}
	return b.statusLocked(id), nil
}

// Prepares returns the prepare requests for invoker to with a sequence number above after (all of
// them when epoch is not this controller run's), this run's epoch, and a channel closed at the
// next request (a long poll waits on it).
func (b *Balancer) Prepares(to int, epoch string, after int64) (string, []Prepare, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if epoch != b.epoch {
		after = 0
	}
	out := []Prepare{}
	for _, p := range b.prepares {
		if p.To == to && p.Seq > after {
			out = append(out, p)
		}
	}
	return b.epoch, out, b.prepared
}

// takesLocked says whether invoker i can take the images of invoker src: up, not draining; b.mu
// is held.
func (b *Balancer) takesLocked(i, src int) bool {
	return i != src && i >= 0 && i < len(b.invokers) && b.invokers[i].health.State() == Healthy && b.invokers[i].drain == nil
}

// advanceDrainsLocked moves every drain on as far as it can go now; b.mu is held. It is called
// when an invoker pings (its warm images changed), when an activation settles, on the clock and
// when a drain starts.
func (b *Balancer) advanceDrainsLocked(now time.Time) {
	for id, inv := range b.invokers {
		if inv.drain != nil {
			b.advanceLocked(id, inv, now)
		}
	}
}

func (b *Balancer) advanceLocked(id int, src *invoker, now time.Time) {
	d := src.drain
	d.waiting = ""
	for image := range d.notMoved {
		if _, warm := src.warm[image]; !warm {
			delete(d.notMoved, image) // cooled on the source: nothing left to move
			d.dirty = true
		}
	}
	for {
		if d.current != "" {
			if !b.takesLocked(d.dest, id) {
				// The destination went away or drains itself: the image is prepared elsewhere.
				b.log.Warn("the drain's destination cannot take the image any more; choosing another",
					zap.Int("invoker", id), zap.String("image", d.current), zap.Int("destination", d.dest))
				d.current = ""
				continue
			}
			if !keyedLike(b.invokers[d.dest].warm, src.warm, d.current) {
				if waited := now.Sub(d.asked); waited >= b.cfg.PrepareTimeout {
					// Give the image up rather than hold the drain forever: the source keeps
					// serving it (Route sends it there as long as it has not moved).
					reason := fmt.Sprintf("invoker%d did not report %s warm and holding the image key within %v",
						d.dest, d.current, b.cfg.PrepareTimeout)
					b.log.Warn("image not moved: its destination did not prepare it in time; the source keeps serving it",
						zap.Int("invoker", id), zap.String("image", d.current), zap.Int("destination", d.dest),
						zap.Duration("waited", waited))
					if d.notMoved == nil {
						d.notMoved = map[string]string{}
					}
					d.notMoved[d.current] = reason
					d.current, d.dirty = "", true
					continue
				}
				d.waiting = fmt.Sprintf("invoker%d to report %s warm and holding the image key", d.dest, d.current)
				d.drained = false
				return
			}
			d.moved[d.current] = d.dest
			d.dirty = true
			b.log.Info("image moved: new activations go to the destination", zap.Int("invoker", id),
				zap.String("image", d.current), zap.Int("destination", d.dest), zap.Duration("prepared_in", now.Sub(d.asked)))
			d.current = ""
		}
		pending := pendingImages(d, src.warm)
		if len(pending) == 0 {
			break
		}
		image := pending[0]
		dest := b.destinationLocked(id, d, image)
		switch {
		case dest < 0 && d.force && d.to < 0:
			d.moved[image] = -1 // nowhere to prepare it: its activations go wherever Schedule says
			d.dirty = true
			continue
		case dest < 0:
			if d.to >= 0 {
				d.waiting = fmt.Sprintf("invoker%d to be up and undrained to take %s", d.to, image)
			} else {
				d.waiting = fmt.Sprintf("an invoker that is up and undrained to take %s", image)
			}
			d.drained = false
			return
		case keyedLike(b.invokers[dest].warm, src.warm, image):
			d.moved[image] = dest
			d.dirty = true
			b.log.Info("image moved: the destination has it warm and keyed", zap.Int("invoker", id),
				zap.String("image", image), zap.Int("destination", dest))
			continue
		}
		b.prepSeq++
		b.prepares = append(b.prepares, Prepare{Seq: b.prepSeq, Image: image, From: id, To: dest})
		if len(b.prepares) > maxPrepares {
			b.prepares = slices.Delete(b.prepares, 0, len(b.prepares)-maxPrepares)
		}
		close(b.prepared)
		b.prepared = make(chan struct{})
		d.current, d.dest, d.asked = image, dest, now
		b.log.Info("asking the destination to prepare an image", zap.Int("invoker", id), zap.String("image", image),
			zap.Int("destination", dest))
	}
	n := b.inFlightOnLocked(id)
	var waits []string
	stuck := len(d.notMoved)
	if stuck > 0 {
		waits = append(waits, fmt.Sprintf("a new drain request to retry the %d images not moved (notMoved)", stuck))
	}
	if n > 0 {
		waits = append(waits, fmt.Sprintf("%d activations in flight", n))
	}
	d.waiting = strings.Join(waits, "; ")
	if was := d.drained; (n == 0 && stuck == 0) != was {
		d.drained = n == 0 && stuck == 0
		d.dirty = true
		if d.drained {
			b.log.Info("invoker drained", zap.Int("invoker", id), zap.Duration("took", now.Sub(d.started)))
		}
	}
}

// keyedLike says whether image is warm in dest holding a key, the same kid as in src when src
// names one (so that what clients sealed to the published key opens there as well).
func keyedLike(dest, src map[string]string, image string) bool {
	kid, ok := dest[image]
	return ok && kid != "" && (src[image] == "" || src[image] == kid)
}

// pendingImages are the images warm on a draining invoker not moved yet nor given up, sorted.
func pendingImages(d *drain, warm map[string]string) []string {
	var out []string
	for image := range warm {
		_, moved := d.moved[image]
		_, stuck := d.notMoved[image]
		if !moved && !stuck {
			out = append(out, image)
		}
	}
	slices.Sort(out)
	return out
}

// destinationLocked picks where image moves from invoker src: the one asked for, else an invoker
// that has it warm with the same key, else the one with the most free memory (the lowest number
// on a tie); -1 when none can take it. b.mu is held.
func (b *Balancer) destinationLocked(src int, d *drain, image string) int {
	if d.to >= 0 {
		if b.takesLocked(d.to, src) {
			return d.to
		}
		return -1
	}
	best := -1
	for i, inv := range b.invokers {
		if !b.takesLocked(i, src) {
			continue
		}
		if keyedLike(inv.warm, b.invokers[src].warm, image) {
			return i
		}
		if best < 0 || inv.freeMB > b.invokers[best].freeMB {
			best = i
		}
	}
	return best
}

// inFlightOnLocked counts the activations placed on invoker id and not settled; b.mu is held.
func (b *Balancer) inFlightOnLocked(id int) int {
	n := 0
	for _, e := range b.inFlight {
		if e.invoker == id {
			n++
		}
	}
	return n
}

// statusLocked is invoker id's DrainStatus; b.mu is held.
func (b *Balancer) statusLocked(id int) DrainStatus {
	inv := b.invokers[id]
	s := DrainStatus{Invoker: id, State: "serving", To: -1, Moved: map[string]int{}, Pending: []string{},
		InFlight: b.inFlightOnLocked(id)}
	d := inv.drain
	if d == nil {
		return s
	}
	s.State, s.To, s.Force, s.Waiting = StateDraining, d.to, d.force, d.waiting
	if d.drained {
		s.State = StateDrained
	}
	s.Since = d.started.UTC().Format(time.RFC3339)
	if !slices.ContainsFunc(b.invokers, func(o *invoker) bool { return o != inv && o.health.State() == Healthy && o.drain == nil }) {
		s.Warning = lastInvokerConsequence(id)
	}
	for k, v := range d.moved {
		s.Moved[k] = v
	}
	for k, v := range d.notMoved {
		if s.NotMoved == nil {
			s.NotMoved = map[string]string{}
		}
		s.NotMoved[k] = v
	}
	for _, image := range pendingImages(d, inv.warm) {
		if image == d.current {
			s.Preparing = &PreparingImage{Image: image, On: d.dest, Seconds: b.cfg.Now().Sub(d.asked).Seconds()}
			continue
		}
		s.Pending = append(s.Pending, image)
	}
	return s
}

// drainState is invoker inv's drain state for GET /invokers, "" when it does not drain.
func (inv *invoker) drainState() string {
	switch {
	case inv.drain == nil:
		return ""
	case inv.drain.drained:
		return StateDrained
	default:
		return StateDraining
	}
}

// newEpoch names this controller run for the prepare polls.
func newEpoch() string { return rand.Text()[:12] }

// WarmKid is the kid invoker id's last ping gave for image: "" when the image is not warm there
// or its owners hold no key yet.
func (b *Balancer) WarmKid(id int, image string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if id < 0 || id >= len(b.invokers) {
		return ""
	}
	return b.invokers[id].warm[image]
}
