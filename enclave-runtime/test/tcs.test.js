'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { TcsTable } = require('../trusted/tcs');

test('acquire hands out distinct slots and -1 when none is free', () => {
  const t = new TcsTable(2);
  const a = {};
  const b = {};
  assert.equal(t.acquire(a), 0);
  assert.equal(t.acquire(b), 1);
  assert.equal(t.acquire({}), -1);
  assert.deepEqual(t.stats(), { slots: 2, free: 0, held: 2, running: 0, quarantined: 0 });
  assert.equal(t.release(0, a), 'free');
  assert.equal(t.acquire({}), 0, 'a released slot is handed out again');
});

test('acquire prefers the lowest free slot the predicate likes', async (t) => {
  // taken: slots already held; ready: slots for which prefer() is true.
  const cases = [
    { name: 'no preference: lowest free', taken: [0], ready: null, want: 1 },
    { name: 'lowest ready slot wins over a lower unready one', taken: [], ready: [2, 3], want: 2 },
    { name: 'a taken ready slot is skipped', taken: [1], ready: [1, 3], want: 3 },
    { name: 'nothing ready: lowest free', taken: [0], ready: [], want: 1 },
    { name: 'ready but all taken: lowest free', taken: [0, 1], ready: [0, 1], want: 2 },
    { name: 'nothing free', taken: [0, 1, 2, 3], ready: [0], want: -1 },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const tab = new TcsTable(4);
      for (const i of c.taken) tab.slots[i] = { state: 'held', holder: {} };
      const got = tab.acquire({}, c.ready ? (i) => c.ready.includes(i) : undefined);
      assert.equal(got, c.want);
      if (got >= 0) assert.equal(tab.state(got), 'held');
    });
  }
  assert.throws(() => new TcsTable(1).acquire({}, 'slot 0'), /prefer must be a function/);
  assert.throws(() => new TcsTable(1).acquire({}, [() => true, 7]), /prefer must be a function or a list/);
});

test('acquire with ranked preferences takes the best rank, the lowest slot within it', async (t) => {
  // ranks: for each preference (best first), the slots it likes.
  const cases = [
    { name: 'best rank wins over a lower slot of a worse rank', taken: [], ranks: [[3], [0, 1, 2]], want: 3 },
    { name: 'lowest slot within the best rank', taken: [], ranks: [[2, 3], [0]], want: 2 },
    { name: 'best rank all taken: the next rank', taken: [3], ranks: [[3], [1, 2]], want: 1 },
    { name: 'no rank likes a free slot: lowest free', taken: [0], ranks: [[0], []], want: 1 },
    { name: 'empty list: lowest free', taken: [], ranks: [], want: 0 },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const tab = new TcsTable(4);
      for (const i of c.taken) tab.slots[i] = { state: 'held', holder: {} };
      assert.equal(tab.acquire({}, c.ranks.map((likes) => (i) => likes.includes(i))), c.want);
    });
  }
});

test('slot state transitions', async (t) => {
  const cases = [
    { name: 'release without a run frees', steps: ['acquire', 'release'], want: 'free' },
    { name: 'run then release frees', steps: ['acquire', 'begin', 'end', 'release'], want: 'free' },
    { name: 'release during a run quarantines', steps: ['acquire', 'begin', 'release'], want: 'quarantined' },
    { name: 'teardown of a quarantined run frees', steps: ['acquire', 'begin', 'release', 'end'], want: 'free' },
    { name: 'end of run keeps it held', steps: ['acquire', 'begin', 'end'], want: 'held' },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const tab = new TcsTable(1);
      const h = {};
      for (const s of c.steps) {
        if (s === 'acquire') assert.equal(tab.acquire(h), 0);
        if (s === 'begin') tab.beginRun(0, h);
        if (s === 'end') tab.endRun(0);
        if (s === 'release') tab.release(0, h);
      }
      assert.equal(tab.state(0), c.want);
    });
  }
});

test('a quarantined slot is not handed out until its isolate is torn down', () => {
  const t = new TcsTable(1);
  const h = {};
  t.acquire(h);
  t.beginRun(0, h);
  t.release(0, h);
  assert.equal(t.acquire({}), -1);
  assert.equal(t.stats().quarantined, 1);
  t.endRun(0);
  assert.equal(t.acquire({}), 0);
});

test('only the holder acts on its slot', () => {
  const t = new TcsTable(2);
  const a = {};
  t.acquire(a);
  assert.throws(() => t.release(0, {}), /not held/);
  assert.throws(() => t.beginRun(0, {}), /not held/);
  assert.throws(() => t.beginRun(1, a), /not held/);
  assert.throws(() => t.release(5, a), /no slot/);
  t.beginRun(0, a);
  assert.throws(() => t.beginRun(0, a), /cannot start/);
  t.release(0, a);
  assert.throws(() => t.release(0, a), /not held/, 'a quarantined slot has no holder');
  assert.throws(() => t.endRun(1), /no run/);
});

test('bad sizes are refused', () => {
  for (const n of [0, -1, 1.5, 1025, '4', undefined]) {
    assert.throws(() => new TcsTable(n), RangeError);
  }
});
