'use strict';
// start({reuse: 'tenant'}): a slot keeps its isolate for one tenant's activations,
// each still in a new context and Node environment (activation.h, KeptIsolate).
// These tests hold the rules the mode rests on: a kept isolate serves only the
// tenant it was bound to; a tenant-less activation (a sealed one) only takes an
// isolate nothing ran in; an activation that does not end cleanly (time limit,
// process.exit, a throw) ends its isolate; nothing of one activation's globals
// reaches the next; and the default still makes one isolate per activation.

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const addonPath = path.join(root, 'build', 'teemate_isolate.node');
if (!fs.existsSync(addonPath)) execFileSync('make', ['-C', root], { stdio: 'inherit' });
const iso = require(addonPath);

function run(slot, source, tenant, { timeoutMs = 10000 } = {}) {
  return new Promise((resolve) => {
    iso.run(slot, source, '{}', timeoutMs, 64, (err, result, stats) => resolve({ err, result, stats }), tenant);
  });
}

async function ok(slot, source, tenant) {
  const r = await run(slot, source, tenant);
  assert.ok(!r.err, r.err && r.err.message);
  return r;
}

// What the activations see of each other: each records its isolate's leftovers.
const PROBE = `const os = require('os');
globalThis.__teemate_result = JSON.stringify({
  leakedGlobal: typeof globalThis.leaked, leakedProto: typeof [].leaked, leakedModule: typeof os.leaked });
globalThis.leaked = 1; Array.prototype.leaked = 1; os.leaked = 1;`;

for (const prewarm of [1, 0]) {
  describe(`reuse: 'tenant', ${prewarm ? 'prepared ahead' : 'cold slot'}`, () => {
    before(() => iso.start(1, { prewarm, reuse: 'tenant' }));
    after(() => iso.stop());

    test('one tenant keeps its isolate, in a new context each time', async () => {
      assert.equal(iso.info().reuse, 'tenant');
      const a1 = await ok(0, PROBE, 'alice');
      const a2 = await ok(0, PROBE, 'alice');
      const a3 = await ok(0, PROBE, 'alice');
      assert.equal(a2.stats.isolateId, a1.stats.isolateId, 'alice\'s second activation is in her isolate');
      assert.equal(a3.stats.isolateId, a1.stats.isolateId);
      assert.notEqual(a2.stats.envId, a1.stats.envId, 'a new environment every time');
      assert.equal(a1.stats.isolateKept, true);
      for (const r of [a1, a2, a3]) {
        assert.deepEqual(JSON.parse(r.result), { leakedGlobal: 'undefined', leakedProto: 'undefined', leakedModule: 'undefined' },
          'no global, builtin change or module of an earlier activation is visible');
      }
    });

    test('another tenant never gets it, nor does a tenant-less activation', async () => {
      const seen = new Map(); // isolateId -> tenant
      const note = (r, tenant) => {
        const id = r.stats.isolateId;
        assert.ok(!seen.has(id) || seen.get(id) === tenant, `isolate ${id} served ${seen.get(id)} and then ${tenant}`);
        seen.set(id, tenant);
      };
      const order = ['alice', 'bob', 'bob', 'alice', '', 'alice', '', '', 'bob', 'carol', 'alice'];
      for (const tenant of order) {
        const r = await ok(0, PROBE, tenant === '' ? undefined : tenant);
        note(r, tenant || `none-${r.stats.envId}`);
        assert.equal(r.stats.isolateKept, tenant !== '', `isolateKept for ${tenant || 'no tenant'}`);
      }
      // 11 activations: bob's second stayed in his isolate; every switch and every tenant-less one took a new one.
      assert.equal(seen.size, 10, JSON.stringify([...seen]));
    });

    test('an activation that does not end cleanly ends its isolate', async () => {
      const a = await ok(0, PROBE, 'dave');
      for (const [what, source, opts, code] of [
        ['time limit', 'for (;;) {}', { timeoutMs: 150 }, 'TIMEOUT'],
        ['process.exit', 'process.exit(2)', {}, 'INTERNAL'],
        ['a throw', 'throw new Error("boom")', {}, 'INTERNAL'],
      ]) {
        const before = (await ok(0, PROBE, 'dave')).stats.isolateId;
        const bad = await run(0, source, 'dave', opts);
        assert.equal(bad.err && bad.err.code, code, what);
        assert.equal(bad.stats.isolateId, before, `${what} ran in dave's isolate`);
        assert.equal(bad.stats.isolateKept, false, what);
        const next = await ok(0, PROBE, 'dave');
        assert.notEqual(next.stats.isolateId, before, `after ${what} dave gets a new isolate`);
        assert.ok(next.stats.isolateId > a.stats.isolateId);
      }
    });

    test(prewarm ? 'an idle prepared slot keeps its isolate' : 'an idle cold slot gives its isolate up', async () => {
      const first = await ok(0, PROBE, 'frank');
      assert.equal((await ok(0, PROBE, 'frank')).stats.isolateId, first.stats.isolateId);
      await new Promise((r) => setTimeout(r, 1500)); // past the addon's 1 s idle delay
      const later = await ok(0, PROBE, 'frank');
      if (prewarm) assert.equal(later.stats.isolateId, first.stats.isolateId, 'a hot slot holds its prepared context');
      else assert.notEqual(later.stats.isolateId, first.stats.isolateId, 'an idle cold slot holds nothing');
    });

    test('many activations of one tenant stay in one isolate', async () => {
      const first = await ok(0, PROBE, 'erin');
      for (let i = 0; i < 40; i++) {
        const r = await ok(0, 'const a = []; for (let i = 0; i < 20000; i++) a.push({ i }); globalThis.__teemate_result = String(a.length);', 'erin');
        assert.equal(r.result, '20000');
        assert.equal(r.stats.isolateId, first.stats.isolateId);
      }
    });
  });
}

describe('the default: reuse none', () => {
  before(() => iso.start(1, { prewarm: 1 }));
  after(() => iso.stop());
  test('every activation has an isolate of its own, whatever the tenant', async () => {
    assert.equal(iso.info().reuse, 'none');
    const ids = new Set();
    for (let i = 0; i < 4; i++) {
      const r = await ok(0, PROBE, 'alice');
      assert.equal(r.stats.isolateKept, false);
      ids.add(r.stats.isolateId);
    }
    assert.equal(ids.size, 4);
  });
});

test('bad reuse options and tenants are refused', () => {
  assert.throws(() => iso.start(1, { reuse: 'always' }), (e) => e.code === 'ERR_INVALID_ARG_VALUE' && /'none' or 'tenant'/.test(e.message));
  assert.throws(() => iso.start(1, { reuse: true }), (e) => e.code === 'ERR_INVALID_ARG_TYPE');
  iso.start(1, { reuse: 'tenant' });
  try {
    assert.throws(() => iso.run(0, '1', '{}', 1000, 64, () => {}, 42), (e) => e.code === 'ERR_INVALID_ARG_TYPE' && /tenant must be a string/.test(e.message));
    assert.throws(() => iso.run(0, '1', '{}', 1000, 64, () => {}, 'x'.repeat(257)), (e) => e.code === 'ERR_OUT_OF_RANGE');
  } finally {
    iso.stop();
  }
});
