'use strict';
// Behaviour tests of the teemate_isolate addon: every activation runs in a new
// Node environment on the parked thread of its slot, and nothing an activation
// does (loops, heap bombs, process.exit, throws) harms the owner process.
// The whole suite runs twice: with prewarm (the next environment is prepared
// ahead on each slot thread) and cold (made on the request path); a third part
// checks the prewarm budget (only the lowest K slots keep one prepared), a fourth
// the runtime prelude (run while an environment is prepared; its entry is what a
// run with a null source calls).

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const addonPath = path.join(root, 'build', 'teemate_isolate.node');
if (!fs.existsSync(addonPath)) {
  execFileSync('make', ['-C', root], { stdio: 'inherit' });
}
const iso = require(addonPath);

const SLOTS = 4;
const HEAP_MB = 64;

// run() as a promise resolving to {err, result, stats}.
function run(slot, source, request = {}, { timeoutMs = 10000, heapMB = HEAP_MB } = {}) {
  return new Promise((resolve) => {
    iso.run(slot, source, JSON.stringify(request), timeoutMs, heapMB, (err, result, stats) => {
      resolve({ err, result, stats });
    });
  });
}

// The owner must still run its own JavaScript and timers after each case.
async function assertOwnerHealthy() {
  await new Promise((resolve) => setTimeout(resolve, 1));
  assert.equal(JSON.parse(JSON.stringify({ ok: [1, 2] })).ok[1], 2);
  assert.ok(process.memoryUsage().rss > 0);
}

function assertStats(stats) {
  for (const k of ['setupMs', 'runMs', 'createMs', 'bootstrapMs']) {
    assert.equal(typeof stats[k], 'number', k);
    assert.ok(stats[k] >= 0, k);
  }
  // Freed after delivery: unknown when the callback runs.
  assert.equal(stats.teardownMs, null, 'teardownMs');
  assert.ok(stats.lastTeardownMs === null || stats.lastTeardownMs >= 0, 'lastTeardownMs');
  assert.ok(Number.isInteger(stats.envId) && stats.envId > 0, 'envId');
  assert.equal(typeof stats.prewarmed, 'boolean');
}

// Waits (without spinning) until every slot holds a prepared environment.
async function waitPrepared(slots = [...Array(SLOTS).keys()]) {
  const limit = Date.now() + 20000;
  while (!slots.every((s) => iso.info().prepared[s])) {
    if (Date.now() > limit) assert.fail(`slots ${slots} never got a prepared environment: ${JSON.stringify(iso.info())}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

// What a fresh environment looks like from inside, taken by an activation
// before it changes anything. Prewarmed and cold environments must agree.
const FINGERPRINT = `
  const fp = {
    globals: Object.getOwnPropertyNames(globalThis).sort(),
    objectProto: Object.getOwnPropertyNames(Object.prototype).sort(),
    arrayProto: Object.getOwnPropertyNames(Array.prototype).sort(),
    processKeys: Object.keys(process).sort(),
    listeners: ['uncaughtException', 'unhandledRejection', 'exit', 'beforeExit', 'warning']
      .map((e) => [e, process.listenerCount(e)]),
    moduleCache: Object.keys(require('module')._cache),
    builtinsLoaded: process.moduleLoadList.length,
    activeHandles: process._getActiveHandles().length,
    activeRequests: process._getActiveRequests().length,
  };
  globalThis.__teemate_result = JSON.stringify(fp);`;
const fingerprints = {};

for (const prewarm of [true, false]) {
  const mode = prewarm ? 'prewarm' : 'cold';
  describe(mode, () => {
    before(() => (prewarm ? iso.start(SLOTS) : iso.start(SLOTS, { prewarm: false })));
    after(() => iso.stop());
    suite(prewarm, mode);
  });
}

describe('prewarm budget: start(4, {prewarm: 2})', () => {
  const K = 2;
  const hot = [0, 1];
  const cold = [2, 3];
  before(() => iso.start(SLOTS, { prewarm: K }));
  after(() => iso.stop());

  test('info reports the budget; only the lowest K slots get a prepared environment', async () => {
    assert.equal(iso.info().prewarm, K);
    await waitPrepared(hot);
    // Give the cold slots time they would need to prepare one (they never do).
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(iso.info().prepared, [true, true, false, false]);
  });

  test('a cold slot runs correctly in an environment made on its request path', async () => {
    const { err, result, stats } = await run(3, FINGERPRINT);
    assert.equal(err, undefined);
    assertStats(stats);
    assert.equal(stats.prewarmed, false);
    assert.equal(stats.lastTeardownMs, null, 'first run on the slot');
    fingerprints.budgetCold = JSON.parse(result);
    const hello = await run(2, 'globalThis.__teemate_result = JSON.parse(globalThis.__teemate_request).x', { x: 'y' });
    assert.equal(hello.err, undefined);
    assert.equal(hello.result, 'y');
    // Failures on a cold slot are reported as on any other, and the slot works afterwards.
    assert.equal((await run(2, 'for (;;) {}', {}, { timeoutMs: 100 })).err.code, 'TIMEOUT');
    assert.equal((await run(2, 'process.exit(4)')).err.code, 'INTERNAL');
    const again = await run(2, 'globalThis.__teemate_result = typeof globalThis.__teemate_request');
    assert.equal(again.err, undefined);
    assert.equal(again.result, 'string');
    assert.ok(again.stats.lastTeardownMs >= 0, 'the previous teardown on this slot is reported');
  });

  test('a hot slot finds its environment prepared', async () => {
    await waitPrepared([0]);
    const { err, result, stats } = await run(0, FINGERPRINT);
    assert.equal(err, undefined);
    assert.equal(stats.prewarmed, true);
    fingerprints.budgetHot = JSON.parse(result);
  });

  test('cold slots never reuse an environment and never keep one after teardown', async () => {
    const ids = new Set();
    const chain = (slot, left, acc) => new Promise((resolve) => {
      iso.run(slot, 'globalThis.__teemate_result = String(typeof globalThis.mark); globalThis.mark = 1;', '{}', 10000, HEAP_MB, (err, result, stats) => {
        acc.push({ err, result, stats });
        if (left > 1) chain(slot, left - 1, acc).then(resolve);
        else resolve(acc);
      });
    });
    const runs = (await Promise.all([0, 1, 2, 3].map((s) => chain(s, 5, [])))).flat();
    for (const { err, result, stats } of runs) {
      assert.equal(err, undefined);
      assert.equal(result, 'undefined', 'nothing of the previous run is visible');
      assertStats(stats);
      assert.ok(!ids.has(stats.envId), `environment ${stats.envId} served twice`);
      ids.add(stats.envId);
    }
    assert.equal(ids.size, 4 * 5);
    for (const { stats } of runs.slice(10)) assert.equal(stats.prewarmed, false, 'cold slots are never prewarmed');
    await waitPrepared(hot);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(iso.info().prepared, [true, true, false, false]);
    for (const s of cold) assert.equal(iso.info().busy[s], false);
  });
});

test('prewarmed and cold environments look the same from inside', () => {
  for (const k of ['prewarm', 'cold', 'budgetCold', 'budgetHot']) assert.ok(fingerprints[k], `${k} took a fingerprint`);
  assert.deepEqual(fingerprints.prewarm, fingerprints.cold);
  assert.deepEqual(fingerprints.budgetCold, fingerprints.cold);
  assert.deepEqual(fingerprints.budgetHot, fingerprints.prewarm);
});

test('lifecycle: stop() with a budget frees the prepared environments; a cold slot after restart', () => {
  const script = `
    const iso = require(${JSON.stringify(addonPath)});
    iso.start(6, { prewarm: 3 });
    const wait = () => (iso.info().prepared.filter(Boolean).length === 3 ? go() : setTimeout(wait, 5));
    const go = () => {
      const before = iso.info();
      iso.stop();
      iso.start(3, { prewarm: 0 });
      iso.run(2, 'globalThis.__teemate_result = "cold"', '{}', 10000, 64, (err, r, st) => {
        console.log(JSON.stringify([before.prewarm, before.prepared, iso.info().prewarm, err === undefined, r, st.prewarmed]));
        process.exit(0);
      });
    };
    wait();`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 });
  assert.equal(r.signal, null, r.stderr);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim()), [3, [true, true, true, false, false, false], 0, true, 'cold', false]);
});

// Slot threads do their background work (teardown, preparing ahead) at a lower
// priority and run jobs at the process's own. Checked in a child process through
// /proc: the nice value of every thread, and of the slot thread while it runs a job.
test('background work runs at a lower priority, jobs at the process priority', { skip: process.platform !== 'linux' }, () => {
  const script = `
    const fs = require('fs');
    const iso = require(${JSON.stringify(addonPath)});
    const nices = () => fs.readdirSync('/proc/self/task').map((t) =>
      Number(fs.readFileSync('/proc/self/task/' + t + '/stat', 'utf8').split(') ')[1].split(' ')[16]));
    iso.start(2, { prewarm: 2 });
    // The job reads its own thread's nice value from inside (the slot thread runs it).
    const src = 'const f = require("fs"); const t = f.readFileSync("/proc/thread-self/stat", "utf8");' +
      'globalThis.__teemate_result = t.split(") ")[1].split(" ")[16];';
    const wait = () => (iso.info().prepared.every(Boolean) ? go() : setTimeout(wait, 5));
    // The second job on slot 0 comes after the slot's background teardown and preparation.
    const go = () => iso.run(0, src, '{}', 10000, 64, () => iso.run(0, src, '{}', 10000, 64, (err, during) => {
      const later = () => (iso.info().prepared.every(Boolean) ? report() : setTimeout(later, 5));
      const report = () => {
        console.log(JSON.stringify({ err: err && err.message, during, base: nices()[0], max: Math.max(...nices()) }));
        process.exit(0);
      };
      later();
    }));
    wait();`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 });
  assert.equal(r.status, 0, r.stderr);
  const got = JSON.parse(r.stdout.trim());
  assert.equal(got.err, undefined);
  assert.equal(Number(got.during), got.base, 'the job ran below the process priority');
  // Lowering and raising a thread's priority needs privilege; without it nothing changes.
  if (process.getuid && process.getuid() === 0) {
    assert.equal(got.max, got.base + 10, 'the slot that ran a job did not prepare its next environment in the background');
  }
});

function suite(prewarm, mode) {
test('info reports the slots, the mode and prewarm', async () => {
  const info = iso.info();
  assert.equal(info.slots, SLOTS);
  assert.deepEqual(info.busy, [false, false, false, false]);
  assert.equal(info.mode, 'addon');
  assert.equal(info.prewarm, prewarm ? SLOTS : 0);
  assert.equal(info.nodeVersion, process.version);
  if (prewarm) {
    await waitPrepared();
  } else {
    assert.deepEqual(iso.info().prepared, [false, false, false, false]);
  }
});

test('a fresh environment carries nothing of anybody: fingerprint', async () => {
  if (prewarm) await waitPrepared([1]);
  const { err, result, stats } = await run(1, FINGERPRINT);
  assert.equal(err, undefined);
  assert.equal(stats.prewarmed, prewarm);
  const fp = JSON.parse(result);
  assert.ok(!fp.globals.includes('__teemate_result'), 'fingerprint taken before setting the result');
  assert.ok(fp.globals.includes('__teemate_request'));
  fingerprints[mode] = fp;
});

test('hello: the bootstrap reads the request and sets the result', async () => {
  const { err, result, stats } = await run(
    0,
    `const req = JSON.parse(globalThis.__teemate_request);
     const { createHash } = require('crypto');
     globalThis.__teemate_result = JSON.stringify({
       hello: req.name, md5: createHash('md5').update(req.name).digest('hex'),
     });`,
    { name: 'world' },
  );
  assert.equal(err, undefined);
  assert.deepEqual(JSON.parse(result), { hello: 'world', md5: '7d793037a0760186574b0282f2f435e7' });
  assertStats(stats);
  await assertOwnerHealthy();
});

test('the bootstrap can build a require for user modules with createRequire', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'teemate-iso-'));
  fs.writeFileSync(path.join(dir, 'fn.js'), 'exports.main = (p) => ({ doubled: p.n * 2 });');
  const { err, result } = await run(
    1,
    `const userRequire = require('module').createRequire(${JSON.stringify(dir + '/')});
     const fn = userRequire('./fn.js');
     const p = JSON.parse(globalThis.__teemate_request);
     globalThis.__teemate_result = JSON.stringify(fn.main(p));`,
    { n: 21 },
  );
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(err, undefined);
  assert.deepEqual(JSON.parse(result), { doubled: 42 });
});

test('20 sequential runs give distinct results and never see each other\'s globals', async () => {
  const seen = new Set();
  for (let i = 0; i < 20; i++) {
    const { err, result } = await run(
      i % SLOTS,
      `const req = JSON.parse(globalThis.__teemate_request);
       const leaked = [typeof globalThis.leak, typeof globalThis.process.leak,
                       typeof Array.prototype.leak];
       globalThis.leak = req.i; process.leak = req.i; Array.prototype.leak = req.i;
       globalThis.__teemate_result = JSON.stringify({ i: req.i, leaked });`,
      { i },
    );
    assert.equal(err, undefined);
    const r = JSON.parse(result);
    assert.equal(r.i, i);
    assert.deepEqual(r.leaked, ['undefined', 'undefined', 'undefined']);
    seen.add(r.i);
  }
  assert.equal(seen.size, 20);
  assert.equal(globalThis.leak, undefined);
  await assertOwnerHealthy();
});

test('4 concurrent runs on 4 slots run at the same time on their own threads', async () => {
  // Barrier: each run announces itself with a file, then spins *synchronously*
  // until all four have arrived. Runs sharing a thread (or run one after the
  // other) could never all arrive, and would end with TIMEOUT instead.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'teemate-barrier-'));
  const source = `
    const fs = require('fs');
    const { dir, slot, n } = JSON.parse(globalThis.__teemate_request);
    fs.writeFileSync(dir + '/' + slot, '');
    while (fs.readdirSync(dir).length < n) {}
    globalThis.__teemate_result = String(slot);`;
  const runs = [];
  for (let s = 0; s < SLOTS; s++) runs.push(run(s, source, { dir, slot: s, n: SLOTS }, { timeoutMs: 20000 }));
  assert.deepEqual(iso.info().busy, [true, true, true, true]);
  const out = await Promise.all(runs);
  fs.rmSync(dir, { recursive: true, force: true });
  out.forEach(({ err, result }, s) => {
    assert.equal(err, undefined, `slot ${s}: ${err && err.message}`);
    assert.equal(result, String(s));
  });
  assert.deepEqual(iso.info().busy, [false, false, false, false]);
});

test('an endless loop is terminated with TIMEOUT and the slot works again', async () => {
  const { err, result, stats } = await run(2, 'for (;;) {}', {}, { timeoutMs: 150 });
  assert.equal(result, undefined);
  assert.equal(err.code, 'TIMEOUT');
  assert.match(err.message, /time limit of 150 ms/);
  assertStats(stats);
  const next = await run(2, 'globalThis.__teemate_result = "alive"');
  assert.equal(next.err, undefined);
  assert.equal(next.result, 'alive');
  await assertOwnerHealthy();
});

test('a pending timer past the deadline is a TIMEOUT too', async () => {
  const { err } = await run(2, 'setTimeout(() => { globalThis.__teemate_result = "late"; }, 60000);', {}, { timeoutMs: 100 });
  assert.equal(err.code, 'TIMEOUT');
});

test('a heap bomb is stopped with HEAP and the owner survives', async () => {
  const { err, result } = await run(3, 'let a = []; for (;;) a.push(new Array(1e6).fill(1));');
  assert.equal(result, undefined);
  assert.equal(err.code, 'HEAP');
  assert.match(err.message, /heap limit of 64 MB/);
  const next = await run(3, 'globalThis.__teemate_result = "alive"');
  assert.equal(next.err, undefined);
  assert.equal(next.result, 'alive');
  await assertOwnerHealthy();
});

test('small-object and Buffer (external memory) bombs are stopped with HEAP', async () => {
  const objects = await run(3, 'const a = []; for (let i = 0; ; i++) a.push({ i, s: "x" + i });', {}, { heapMB: 32 });
  assert.equal(objects.err.code, 'HEAP');
  const buffers = await run(3, 'const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));');
  assert.equal(buffers.err.code, 'HEAP');
  await assertOwnerHealthy();
});

test('process.exit inside the bootstrap only ends that environment', async () => {
  const { err, stats } = await run(0, 'process.exit(3);');
  assert.equal(err.code, 'INTERNAL');
  assert.match(err.message, /exited with code 3/);
  assert.equal(stats.exitCode, 3);
  // A bootstrap that sets its result and then exits still delivers it.
  const set = await run(0, 'globalThis.__teemate_result = "done"; process.exit(0);');
  assert.equal(set.err, undefined);
  assert.equal(set.result, 'done');
  await assertOwnerHealthy();
});

test('a throwing bootstrap is INTERNAL with the error, sync and async', async () => {
  const sync = await run(1, 'throw new TypeError("bad bootstrap");');
  assert.equal(sync.err.code, 'INTERNAL');
  assert.match(sync.err.message, /TypeError: bad bootstrap/);
  const asyncThrow = await run(1, 'setTimeout(() => { throw new Error("later"); }, 1);');
  assert.equal(asyncThrow.err.code, 'INTERNAL');
  assert.match(asyncThrow.err.message, /uncaught exception.*Error: later/s);
  const rejection = await run(1, 'Promise.reject(new RangeError("nobody catches me"));');
  assert.equal(rejection.err.code, 'INTERNAL');
  assert.match(rejection.err.message, /RangeError: nobody catches me/);
  const syntax = await run(1, 'this is not javascript');
  assert.equal(syntax.err.code, 'INTERNAL');
  assert.match(syntax.err.message, /SyntaxError/);
  await assertOwnerHealthy();
});

test('a missing or non-string result is INTERNAL', async () => {
  const missing = await run(1, '1 + 1;');
  assert.equal(missing.err.code, 'INTERNAL');
  assert.match(missing.err.message, /without setting globalThis.__teemate_result/);
  const number = await run(1, 'globalThis.__teemate_result = 42;');
  assert.equal(number.err.code, 'INTERNAL');
  assert.match(number.err.message, /not a string/);
  const getter = await run(1, 'Object.defineProperty(globalThis, "__teemate_result", { get() { for (;;) {} } });');
  assert.equal(getter.err.code, 'INTERNAL');
});

test('async work (timers, promises, fs callbacks) completes before the result is read', async () => {
  const { err, result } = await run(
    2,
    `const steps = [];
     (async () => {
       await new Promise((r) => setTimeout(r, 20));
       steps.push('timer');
       await Promise.resolve();
       steps.push('microtask');
       await new Promise((r, j) => require('fs').stat(__filename, (e) => (e ? j(e) : r())));
       steps.push('fs');
       setImmediate(() => { steps.push('immediate'); globalThis.__teemate_result = steps.join(','); });
     })();`,
  );
  assert.equal(err, undefined);
  assert.equal(result, 'timer,microtask,fs,immediate');
});

test('console output inside an activation does not disturb the owner', async () => {
  const { err, result } = await run(0, 'console.log("from the activation"); console.error("to stderr"); globalThis.__teemate_result = "ok";');
  assert.equal(err, undefined);
  assert.equal(result, 'ok');
  process.stdout.write(''); // the owner's stdout is still writable
  await assertOwnerHealthy();
});

test('a busy slot is rejected synchronously', async () => {
  const running = run(0, 'setTimeout(() => { globalThis.__teemate_result = "first"; }, 50);');
  assert.throws(() => iso.run(0, '1', '{}', 1000, HEAP_MB, () => {}), (e) => e.code === 'BUSY' && /slot 0 is busy/.test(e.message));
  const { err, result } = await running;
  assert.equal(err, undefined);
  assert.equal(result, 'first');
});

test('bad arguments are refused with clear errors', () => {
  const cb = () => assert.fail('callback must not run');
  const cases = [
    [[SLOTS, 's', '{}', 1000, HEAP_MB, cb], 'ERR_OUT_OF_RANGE', /slot/],
    [[-1, 's', '{}', 1000, HEAP_MB, cb], 'ERR_OUT_OF_RANGE', /slot/],
    [[0.5, 's', '{}', 1000, HEAP_MB, cb], 'ERR_OUT_OF_RANGE', /slot/],
    [['0', 's', '{}', 1000, HEAP_MB, cb], 'ERR_INVALID_ARG_TYPE', /slot/],
    [[0, 42, '{}', 1000, HEAP_MB, cb], 'ERR_INVALID_ARG_TYPE', /bootstrapSource/],
    [[0, undefined, '{}', 1000, HEAP_MB, cb], 'ERR_INVALID_ARG_TYPE', /bootstrapSource/],
    [[0, null, '{}', 1000, HEAP_MB, cb], 'ERR_INVALID_ARG_VALUE', /null but start\(\) was given no prelude/],
    [[0, 's', {}, 1000, HEAP_MB, cb], 'ERR_INVALID_ARG_TYPE', /requestJSON/],
    [[0, 's', '{}', 0, HEAP_MB, cb], 'ERR_OUT_OF_RANGE', /timeoutMs/],
    [[0, 's', '{}', NaN, HEAP_MB, cb], 'ERR_OUT_OF_RANGE', /timeoutMs/],
    [[0, 's', '{}', 1000, 4, cb], 'ERR_OUT_OF_RANGE', /heapLimitMB/],
    [[0, 's', '{}', 1000, HEAP_MB, 'nope'], 'ERR_INVALID_ARG_TYPE', /callback/],
    [[0, 's', '{}'], 'ERR_INVALID_ARG_TYPE', /6 arguments/],
  ];
  for (const [args, code, re] of cases) {
    assert.throws(() => iso.run(...args), (e) => e.code === code && re.test(e.message), JSON.stringify(args.slice(0, 5)));
  }
  assert.throws(() => iso.start(2), (e) => e.code === 'ERR_ALREADY_STARTED');
  assert.deepEqual(iso.info().busy, [false, false, false, false]);
});

if (prewarm) {
  test('prewarm: every activation gets its own environment, even back-to-back on one slot', async () => {
    const ids = new Set();
    // Back-to-back: the next run is queued from the callback, while the slot
    // thread still frees the used environment and prepares the next.
    const chain = (slot, left, acc) => new Promise((resolve) => {
      iso.run(slot, 'globalThis.__teemate_result = String(typeof globalThis.mark); globalThis.mark = 1;', '{}', 10000, HEAP_MB, (err, result, stats) => {
        acc.push({ err, result, stats });
        if (left > 1) chain(slot, left - 1, acc).then(resolve);
        else resolve(acc);
      });
    });
    const runs = (await Promise.all([0, 1, 2, 3].map((s) => chain(s, 6, [])))).flat();
    for (const { err, result, stats } of runs) {
      assert.equal(err, undefined);
      assert.equal(result, 'undefined');
      assertStats(stats);
      assert.ok(!ids.has(stats.envId), `environment ${stats.envId} served twice`);
      ids.add(stats.envId);
    }
    // Spaced out: each run finds its environment prepared, and it is a new one.
    for (let i = 0; i < 8; i++) {
      const slot = i % SLOTS;
      await waitPrepared([slot]);
      const { err, stats } = await run(slot, 'globalThis.__teemate_result = "ok"');
      assert.equal(err, undefined);
      assert.equal(stats.prewarmed, true);
      assert.equal(stats.teardownMs, null, 'teardown happens after delivery');
      assert.ok(stats.lastTeardownMs >= 0, 'the previous activation\'s teardown on this slot');
      assert.ok(!ids.has(stats.envId), `environment ${stats.envId} served twice`);
      ids.add(stats.envId);
    }
    assert.equal(ids.size, 4 * 6 + 8);
  });

  test('prewarm: what one activation leaves behind never reaches the next prepared one', async () => {
    await waitPrepared([2]);
    const dirty = await run(2, `
      globalThis.leak = 'secret'; Object.prototype.polluted = 1; Array.prototype.leak = 1;
      process.on('exit', () => {}); process.leak = 'secret';
      require('module')._cache['/leak.js'] = { exports: 'secret' };
      setTimeout(() => {}, 1);
      globalThis.__teemate_result = 'dirty';`);
    assert.equal(dirty.err, undefined);
    await waitPrepared([2]);
    const clean = await run(2, FINGERPRINT);
    assert.equal(clean.err, undefined);
    assert.equal(clean.stats.prewarmed, true);
    assert.notEqual(clean.stats.envId, dirty.stats.envId);
    assert.deepEqual(JSON.parse(clean.result), fingerprints.prewarm);
  });

  test('prewarm: after a timeout, a heap bomb and an exit, the next prepared environment works', async () => {
    const bad = [
      ['for (;;) {}', { timeoutMs: 100 }, 'TIMEOUT'],
      ['let a = []; for (;;) a.push(new Array(1e6).fill(1));', {}, 'HEAP'],
      ['process.exit(5);', {}, 'INTERNAL'],
      ['throw new Error("x")', {}, 'INTERNAL'],
    ];
    for (const [src, limits, code] of bad) {
      await waitPrepared([3]);
      const r = await run(3, src, {}, limits);
      assert.equal(r.err.code, code, src);
      await waitPrepared([3]);
      const next = await run(3, 'globalThis.__teemate_result = typeof Object.prototype.polluted');
      assert.equal(next.err, undefined);
      assert.equal(next.result, 'undefined');
      assert.equal(next.stats.prewarmed, true);
    }
  });
}

test('start options are checked', () => {
  assert.throws(() => iso.start(2, { prewarm: 'yes' }), (e) => e.code === 'ERR_INVALID_ARG_TYPE' && /prewarm must be a boolean or the number/.test(e.message));
  for (const k of [3, -1, 1.5, NaN, Infinity]) {
    assert.throws(() => iso.start(2, { prewarm: k }), (e) => e.code === 'ERR_OUT_OF_RANGE' && /options.prewarm must be an integer in \[0, 2\]/.test(e.message), String(k));
  }
  assert.throws(() => iso.start(2, { prewarm: null }), (e) => e.code === 'ERR_INVALID_ARG_TYPE');
  assert.throws(() => iso.start(2, { prewram: true }), (e) => e.code === 'ERR_INVALID_ARG_VALUE' && /unknown option 'prewram'/.test(e.message));
  assert.throws(() => iso.start(2, 'fast'), (e) => e.code === 'ERR_INVALID_ARG_TYPE' && /options must be an object/.test(e.message));
  assert.throws(() => iso.start(2, { prewarm: true }), (e) => e.code === 'ERR_ALREADY_STARTED');
  assert.equal(iso.info().prewarm, prewarm ? SLOTS : 0);
});

test('lifecycle: run before start, stop cancels running work, owner exit with work in flight', () => {
  // Separate processes: the slot pool is process-wide.
  const script = `
    const iso = require(${JSON.stringify(addonPath)});
    const out = [];
    try { iso.run(0, '1', '{}', 1000, 64, () => {}); } catch (e) { out.push(e.code); }
    const opts = { prewarm: ${prewarm} };
    iso.start(1, opts);
    iso.run(0, 'for (;;) {}', '{}', 60000, 64, (err) => {
      out.push(err.code, /cancelled/.test(err.message));
      console.log(JSON.stringify(out));
      iso.start(1, opts);
      iso.run(0, 'setInterval(() => {}, 1000)', '{}', 60000, 64, () => console.log('unexpected'));
      setTimeout(() => process.exit(7), 50);
    });
    setTimeout(() => iso.stop(), 50);`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 });
  assert.equal(r.signal, null, r.stderr);
  assert.equal(r.status, 7, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim()), ['ERR_NOT_STARTED', 'INTERNAL', true]);
});

test('lifecycle: stop() and owner exit while slots hold prepared environments', () => {
  const script = `
    const iso = require(${JSON.stringify(addonPath)});
    iso.start(3, { prewarm: ${prewarm} });
    const wait = () => (iso.info().prepared.every(Boolean) || !${prewarm} ? go() : setTimeout(wait, 5));
    const go = () => {
      iso.stop();
      const after = iso.info();
      iso.start(2, { prewarm: ${prewarm} });
      iso.run(1, 'globalThis.__teemate_result = "again"', '{}', 10000, 64, (err, r) => {
        console.log(JSON.stringify([after.slots, after.prewarm, err === undefined, r]));
        process.exit(0); // with the other slot still holding a prepared environment
      });
    };
    wait();`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 });
  assert.equal(r.signal, null, r.stderr);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim()), [0, 0, true, 'again']);
});
}

// The runtime's prelude: trusted code run while each environment is prepared,
// returning the entry that run(slot, null, ...) calls with the request.
describe('prelude: start(4, {prewarm: 2, prelude})', () => {
  const PRELUDE = `
    const preparedAt = performance.now();
    const seen = [];                       // state of this one environment
    // As the enclave runtime's bootstrap does: an environment's own process.env
    // writes through to the process's environment, a plain object does not.
    process.env = {};
    globalThis.fromPrelude = 'prelude';
    let warmed = false;
    const entry = function entry(requestText, deliver) {
      const req = JSON.parse(requestText);
      seen.push(req.tag);
      const out = { seen: [...seen], warmed, fromPrelude: globalThis.fromPrelude, leak: globalThis.leak === undefined ? null : globalThis.leak,
        requestGlobal: typeof globalThis.__teemate_request, preparedBeforeRequest: preparedAt < performance.now() };
      if (req.dirty) {
        globalThis.leak = 'secret'; process.env.LEAK = 'x'; Object.prototype.polluted = 1;
        require('module')._cache['/leak.js'] = { exports: 'secret' };
        setTimeout(() => { globalThis.leak = 'late'; }, 1); // runs after the delivery, in this environment only
      }
      if (req.mode === 'async') { setTimeout(() => deliver(JSON.stringify(out)), 5); return; }
      if (req.mode === 'twice') { deliver('first'); deliver('second'); return; }
      if (req.mode === 'nonstring') { try { deliver(42); } catch (e) { deliver(e.name + ': ' + e.message); } return; }
      if (req.mode === 'none') return;
      if (req.mode === 'throw') throw new Error('entry threw');
      if (req.mode === 'loop') for (;;) {}
      if (req.mode === 'bomb') { const a = []; for (;;) a.push(new Array(1e6).fill(1)); }
      if (req.mode === 'global') { globalThis.__teemate_result = 'forged'; return; }
      globalThis.__teemate_result = 'ignored in entry mode';
      out.polluted = ({}).polluted === undefined ? null : 1;
      out.env = process.env.LEAK === undefined ? null : process.env.LEAK;
      out.cached = Object.keys(require('module')._cache).includes('/leak.js');
      deliver(JSON.stringify(out));
    };
    // Called only when the environment is prepared ahead of a request (hot slot).
    entry.warm = () => { warmed = true; };
    return entry;`;
  const entry = (slot, request, limits) => new Promise((resolve) => {
    iso.run(slot, null, JSON.stringify(request), (limits && limits.timeoutMs) || 10000, HEAP_MB, (err, result, stats) => {
      resolve({ err, result, stats });
    });
  });
  before(() => iso.start(SLOTS, { prewarm: 2, prelude: PRELUDE }));
  after(() => iso.stop());

  test('the entry gets the request and delivers the result; nothing goes through globals', async () => {
    assert.equal(iso.info().prelude, true);
    await waitPrepared([0, 1]);
    for (const slot of [0, 3]) { // a hot slot (prepared ahead) and a cold one (prepared on the request path)
      const { err, result, stats } = await entry(slot, { tag: `s${slot}` });
      assert.equal(err, undefined);
      assertStats(stats);
      assert.equal(stats.prewarmed, slot === 0);
      assert.ok(stats.preludeMs > 0 && stats.preludeMs <= stats.bootstrapMs, `preludeMs ${stats.preludeMs}`);
      assert.deepEqual(JSON.parse(result), { seen: [`s${slot}`], warmed: slot === 0, fromPrelude: 'prelude', leak: null,
        requestGlobal: 'undefined', preparedBeforeRequest: true, polluted: null, env: null, cached: false });
    }
  });

  test('prelude state is per environment: nothing of one activation reaches the next', async () => {
    for (const slot of [1, 2]) {
      await waitPrepared([0, 1]);
      const dirty = await entry(slot, { tag: 'dirty', dirty: true });
      assert.equal(dirty.err, undefined);
      await new Promise((resolve) => setTimeout(resolve, 20)); // the timer has fired by now
      await waitPrepared([0, 1]);
      const clean = await entry(slot, { tag: 'clean' });
      assert.equal(clean.err, undefined);
      assert.notEqual(clean.stats.envId, dirty.stats.envId);
      assert.deepEqual(JSON.parse(clean.result), { seen: ['clean'], warmed: slot === 1, fromPrelude: 'prelude', leak: null,
        requestGlobal: 'undefined', preparedBeforeRequest: true, polluted: null, env: null, cached: false });
    }
  });

  test('async delivery, first delivery wins, a non-string is refused', async () => {
    const a = await entry(0, { tag: 'a', mode: 'async' });
    assert.equal(a.err, undefined);
    assert.deepEqual(JSON.parse(a.result).seen, ['a']);
    assert.equal((await entry(0, { mode: 'twice' })).result, 'first');
    assert.equal((await entry(1, { mode: 'nonstring' })).result, 'TypeError: deliver(result): result must be a string');
  });

  test('failures in entry mode: no delivery, a throw, a forged global, timeout, heap', async () => {
    // Nothing delivered and nothing left to run (a promise that never settles): the run waits
    // for its deadline and is a time-out, as OpenWhisk's proxy keeps waiting for the promise.
    const t0 = Date.now();
    const none = await entry(0, { mode: 'none' }, { timeoutMs: 300 });
    assert.equal(none.err.code, 'TIMEOUT');
    assert.ok(Date.now() - t0 >= 290, 'answered before the deadline');
    const forged = await entry(0, { mode: 'global' }, { timeoutMs: 300 });
    assert.equal(forged.result, undefined, 'globalThis.__teemate_result is not the channel in entry mode');
    assert.equal(forged.err.code, 'TIMEOUT');
    const threw = await entry(3, { mode: 'throw' });
    assert.equal(threw.err.code, 'INTERNAL');
    assert.match(threw.err.message, /entry threw/);
    assert.equal((await entry(0, { mode: 'loop' }, { timeoutMs: 100 })).err.code, 'TIMEOUT');
    assert.equal((await entry(2, { mode: 'bomb' })).err.code, 'HEAP');
    const ok = await entry(0, { tag: 'after' });
    assert.equal(ok.err, undefined);
    assert.deepEqual(JSON.parse(ok.result).seen, ['after']);
  });

  test('a bootstrap source still runs as the main script, after the prelude', async () => {
    const { err, result } = await run(0, 'globalThis.__teemate_result = globalThis.fromPrelude + ":" + JSON.parse(globalThis.__teemate_request).x', { x: 1 });
    assert.equal(err, undefined);
    assert.equal(result, 'prelude:1');
  });
});

test('prelude options and entry runs are checked', () => {
  const script = `
    const iso = require(${JSON.stringify(addonPath)});
    const out = [];
    const code = (f) => { try { f(); return 'no error'; } catch (e) { return e.code + ' ' + e.message; } };
    out.push(code(() => iso.start(1, { prelude: 42 })));
    out.push(code(() => iso.start(1, { prelude: '' })));
    iso.start(1, { prewarm: 0 });
    out.push(iso.info().prelude);
    out.push(code(() => iso.run(0, null, '{}', 1000, 64, () => {})));
    iso.stop();
    // A prelude that fails (throws, or returns no function) fails every run with its reason,
    // on hot and cold slots alike, and the owner goes on.
    const bad = [['throw new Error("broken prelude")', true], ['return 42', false],
      ['const f = (r, deliver) => deliver("prepared on the request path"); f.warm = () => { throw new Error("broken warm-up"); }; return f;', true]];
    const next = () => {
      if (!bad.length) { console.log(JSON.stringify(out)); return; }
      const [prelude, prewarm] = bad.shift();
      iso.start(1, { prewarm, prelude });
      setTimeout(() => iso.run(0, null, '{}', 5000, 64, (err, result, stats) => {
        out.push(err ? err.code : 'ok', err ? err.message : [result, stats.prewarmed]);
        iso.stop();
        next();
      }), 50);
    };
    next();`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 });
  assert.equal(r.signal, null, r.stderr);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim());
  assert.match(out[0], /^ERR_INVALID_ARG_TYPE options.prelude must be a string/);
  assert.match(out[1], /^ERR_INVALID_ARG_VALUE options.prelude must not be empty/);
  assert.equal(out[2], false);
  assert.match(out[3], /^ERR_INVALID_ARG_VALUE bootstrapSource is null but start\(\) was given no prelude/);
  assert.equal(out[4], 'INTERNAL');
  assert.match(out[5], /the runtime prelude failed: .*broken prelude/);
  assert.equal(out[6], 'INTERNAL');
  assert.match(out[7], /the runtime prelude failed: it must return the entry function/);
  // A hot slot's warm-up failing fails its preparation ahead; the run then prepares
  // on its own request path, where no warm-up runs, and succeeds.
  assert.equal(out[8], 'ok');
  assert.deepEqual(out[9], ['prepared on the request path', false]);
});

test('the prelude code cache: made once, consumed by every later environment, off on request', () => {
  // In a child: start() may only run once per owner at a time, and the suite above holds it.
  const script = `
    const iso = require(${JSON.stringify(addonPath)});
    // The prelude sees what run_cjs gives a main script: this === exports, the
    // builtin require, a module of the executable's path.
    const PRELUDE = \`
      const where = [this === exports, typeof require('path').join, module.exports === exports, __filename === process.execPath,
        typeof __dirname === 'string'];
      let inner = (n) => n * 2; // compiled lazily, on its first call
      const entry = (req, deliver) => deliver(JSON.stringify({ where, twice: inner(JSON.parse(req).n) }));
      entry.warm = () => inner(1);
      return entry;\`;
    const out = [];
    const runs = (left, done) => iso.run(0, null, JSON.stringify({ n: left }), 5000, 64, (err, result, stats) => {
      out.push(err ? err.code + ' ' + err.message : [result, stats.preludeCache, typeof stats.preludeCpuMs, typeof stats.createCpuMs,
        typeof stats.bootstrapCpuMs, typeof stats.runCpuMs]);
      if (left > 1) setTimeout(() => runs(left - 1, done), 5); else done();
    });
    const code = (f) => { try { f(); return 'no error'; } catch (e) { return e.code + ' ' + e.message; } };
    out.push(code(() => iso.start(1, { prelude: PRELUDE, codeCache: 'yes' })));
    iso.start(1, { prewarm: 0, prelude: PRELUDE });
    runs(3, () => {
      iso.stop();
      // A new start() makes a new cache (the prelude may differ); codeCache: false makes none.
      iso.start(1, { prewarm: 0, prelude: PRELUDE.replace('n * 2', 'n * 3') });
      runs(2, () => {
        iso.stop();
        iso.start(1, { prewarm: 0, prelude: PRELUDE, codeCache: false });
        runs(1, () => { iso.stop(); console.log(JSON.stringify(out)); });
      });
    });`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30000 });
  assert.equal(r.signal, null, r.stderr);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim());
  assert.match(out[0], /^ERR_INVALID_ARG_TYPE options.codeCache must be a boolean/);
  const where = [true, 'function', true, true, true];
  const numbers = ['number', 'number', 'number', 'number'];
  assert.deepEqual(out.slice(1), [
    [JSON.stringify({ where, twice: 6 }), 'produced', ...numbers],
    [JSON.stringify({ where, twice: 4 }), 'consumed', ...numbers],
    [JSON.stringify({ where, twice: 2 }), 'consumed', ...numbers],
    [JSON.stringify({ where, twice: 6 }), 'produced', ...numbers],
    [JSON.stringify({ where, twice: 3 }), 'consumed', ...numbers],
    [JSON.stringify({ where, twice: 2 }), 'off', ...numbers],
  ]);
});
