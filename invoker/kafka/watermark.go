package kafka

import "sort"

// watermark tracks the records of one partition that have been handed out
// and decides which offset may be committed: the lowest offset still being
// worked on, or one past the last record handed out when all are finished.
// Committing it never skips a record that is not finished, however records
// complete. Offsets may have gaps (compaction, transaction markers).
//
// It is a pure value type; the Consumer guards it with its mutex.
type watermark struct {
	// next is one past the highest offset delivered; -1 until the first
	// delivery, because a claim's starting offset may be a sentinel
	// (OffsetOldest) that only the first record resolves.
	next int64
	// pending holds delivered, unfinished offsets in ascending order
	// (deliveries arrive in offset order).
	pending []int64
}

func newWatermark() *watermark { return &watermark{next: -1} }

// deliver records that offset was handed out. Offsets must increase; a
// repeated or older offset is refused (false) and changes nothing.
func (w *watermark) deliver(offset int64) bool {
	if offset < 0 || offset < w.next {
		return false
	}
	w.pending = append(w.pending, offset)
	w.next = offset + 1
	return true
}

// done marks a delivered offset finished. It returns false for an offset
// that is not outstanding (never delivered here, or already done).
func (w *watermark) done(offset int64) bool {
	i := sort.Search(len(w.pending), func(i int) bool { return w.pending[i] >= offset })
	if i == len(w.pending) || w.pending[i] != offset {
		return false
	}
	w.pending = append(w.pending[:i], w.pending[i+1:]...)
	return true
}

// commit returns the offset to commit (the next offset a restarted consumer
// should read) and whether there is anything to commit at all.
func (w *watermark) commit() (int64, bool) {
	if w.next < 0 {
		return 0, false
	}
	if len(w.pending) > 0 {
		return w.pending[0], true
	}
	return w.next, true
}

// outstanding is the number of delivered, unfinished records.
func (w *watermark) outstanding() int { return len(w.pending) }
