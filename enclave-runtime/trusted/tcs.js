'use strict';
// TCS table of the shared enclave (trusted side).
//
// A slot stands for one enclave thread (TCS). The table is a pure state machine: it
// never looks at sockets or isolates, so every transition can be unit-tested. The owner
// decides *who* holds a slot (the connection object it bound the slot to) and tells
// the table when a run starts, ends and when an isolate has been torn down.
//
// States of a slot:
//   free        -> in the free list
//   held        -> bound to one holder, no isolate on it
//   running     -> bound to one holder, an isolate runs on it
//   quarantined -> the holder vanished while an isolate ran; the slot returns to the
//                  free list only after that isolate has been torn down (reset)

const FREE = 'free';
const HELD = 'held';
const RUNNING = 'running';
const QUARANTINED = 'quarantined';

class TcsTable {
  constructor(n) {
    if (!Number.isInteger(n) || n < 1 || n > 1024) {
      throw new RangeError(`slot count must be an integer from 1 to 1024, got ${n}`);
    }
    this.slots = Array.from({ length: n }, () => ({ state: FREE, holder: null }));
  }

  get size() { return this.slots.length; }

  // acquire binds a free slot to holder and returns its index, or -1 when none is
  // free (the caller answers `busy`). It takes the lowest free slot for which
  // prefer(i) is true (the owner passes "holds a prepared environment"), else the
  // lowest free slot; prefer may also be a list of such functions, best first.
  // Lowest first keeps the traffic on the low slots, which are the ones with a
  // prewarm budget.
  acquire(holder, prefer) {
    if (holder == null) throw new TypeError('acquire needs a holder');
    const ranks = prefer === undefined ? [] : Array.isArray(prefer) ? prefer : [prefer];
    if (!ranks.every((f) => typeof f === 'function')) throw new TypeError('prefer must be a function or a list of them');
    let pick = -1;
    let rank = ranks.length; // of pick: ranks.length = none of them
    for (let i = 0; i < this.slots.length; i++) {
      if (this.slots[i].state !== FREE) continue;
      if (pick < 0) pick = i;
      const r = ranks.findIndex((f) => f(i));
      if (r >= 0 && r < rank) { pick = i; rank = r; }
      if (rank === 0 || ranks.length === 0) break; // nothing lower can do better
    }
    if (pick >= 0) {
      this.slots[pick].state = HELD;
      this.slots[pick].holder = holder;
    }
    return pick;
  }

  _own(slot, holder) {
    const s = this.slots[slot];
    if (!s) throw new RangeError(`no slot ${slot}`);
    if (s.holder !== holder) throw new Error(`slot ${slot} is not held by this holder`);
    return s;
  }

  // beginRun marks the holder's slot as running an isolate.
  beginRun(slot, holder) {
    const s = this._own(slot, holder);
    if (s.state !== HELD) throw new Error(`slot ${slot} cannot start a run in state ${s.state}`);
    s.state = RUNNING;
  }

  // endRun is called once the run's isolate is torn down. A quarantined slot is reset
  // and freed here; a slot whose holder is still attached goes back to held.
  endRun(slot) {
    const s = this.slots[slot];
    if (!s) throw new RangeError(`no slot ${slot}`);
    if (s.state === RUNNING) {
      s.state = HELD;
    } else if (s.state === QUARANTINED) {
      s.state = FREE;
      s.holder = null;
    } else {
      throw new Error(`slot ${slot} has no run to end (state ${s.state})`);
    }
    return s.state;
  }

  // release gives the slot up on behalf of its holder (release message or the
  // connection closing). A slot with a running isolate is quarantined instead of freed.
  release(slot, holder) {
    const s = this._own(slot, holder);
    if (s.state === RUNNING) {
      s.state = QUARANTINED;
      s.holder = QUARANTINED; // nobody may act on it as a holder any more
    } else if (s.state === HELD) {
      s.state = FREE;
      s.holder = null;
    } else {
      throw new Error(`slot ${slot} cannot be released in state ${s.state}`);
    }
    return s.state;
  }

  state(slot) {
    const s = this.slots[slot];
    return s ? s.state : undefined;
  }

  stats() {
    const out = { slots: this.slots.length, free: 0, held: 0, running: 0, quarantined: 0 };
    for (const s of this.slots) out[s.state] += 1;
    return out;
  }
}

module.exports = { TcsTable, FREE, HELD, RUNNING, QUARANTINED };
