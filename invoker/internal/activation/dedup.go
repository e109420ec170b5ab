package activation

import (
	"container/list"
	"sync"
)

// SentAck is one acknowledgement as it went onto Kafka, kept so that a redelivered activation is
// answered again with exactly the same bytes instead of being run twice.
type SentAck struct {
	Topic string
	Value []byte
}

// Dedup remembers activation ids that are running or were answered recently. Delivery is
// at-least-once, so after a consumer restart or rebalance the same ActivationMessage can arrive again;
// it must be answered, not run a second time. Safe for concurrent use.
type Dedup struct {
	mu       sync.Mutex
	capacity int
	entries  map[string]*dedupEntry
	done     *list.List // answered ids, oldest first, for eviction
}

type dedupEntry struct {
	finished chan struct{} // closed when the first delivery has sent its slot-freeing ack
	acks     []SentAck
	elem     *list.Element
}

// NewDedup keeps up to capacity answered activations (running ones are never evicted).
func NewDedup(capacity int) *Dedup {
	if capacity < 1 {
		capacity = 1
	}
	return &Dedup{capacity: capacity, entries: make(map[string]*dedupEntry), done: list.New()}
}

// Begin registers an activation id. It returns first=true for the first delivery, which must call
// Finish when its acks are sent. For a repeated delivery it returns first=false and a wait function
// that blocks until the first delivery finished and returns the acks to resend (nil if the first
// delivery sent none).
func (d *Dedup) Begin(id string) (first bool, wait func(cancel <-chan struct{}) ([]SentAck, bool)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.entries[id]; ok {
		return false, func(cancel <-chan struct{}) ([]SentAck, bool) {
			select {
			case <-e.finished:
				d.mu.Lock()
				defer d.mu.Unlock()
				return append([]SentAck(nil), e.acks...), true
			case <-cancel:
				return nil, false
			}
		}
	}
	d.entries[id] = &dedupEntry{finished: make(chan struct{})}
	return true, nil
}

// Finish records the acks the first delivery sent and releases repeated deliveries waiting on it.
func (d *Dedup) Finish(id string, acks []SentAck) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.entries[id]
	if !ok || e.elem != nil {
		return
	}
	e.acks = acks
	e.elem = d.done.PushBack(id)
	close(e.finished)
	for d.done.Len() > d.capacity {
		oldest := d.done.Front()
		d.done.Remove(oldest)
		delete(d.entries, oldest.Value.(string))
	}
}

// Len is the number of remembered ids (running and answered).
func (d *Dedup) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.entries)
}
