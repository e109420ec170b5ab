'use strict';
// Behaviour tests of the teemate_isolate addon: every activation runs in a new
// Node environment on the parked thread of its slot, and nothing an activation
// does (loops, heap bombs, process.exit, throws) harms the owner process.

const { test, before, after } = require('node:test');
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
  for (const k of ['setupMs', 'runMs', 'teardownMs']) {
    assert.equal(typeof stats[k], 'number', k);
    assert.ok(stats[k] >= 0, k);
  }
}

before(() => iso.start(SLOTS));
after(() => iso.stop());

test('info reports the slots and the mode', () => {
  const info = iso.info();
  assert.equal(info.slots, SLOTS);
  assert.deepEqual(info.busy, [false, false, false, false]);
  assert.equal(info.mode, 'addon');
  assert.equal(info.nodeVersion, process.version);
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

test('lifecycle: run before start, stop cancels running work, owner exit with work in flight', () => {
  // Separate processes: the slot pool is process-wide.
  const script = `
    const iso = require(${JSON.stringify(addonPath)});
    const out = [];
    try { iso.run(0, '1', '{}', 1000, 64, () => {}); } catch (e) { out.push(e.code); }
    iso.start(1);
    iso.run(0, 'for (;;) {}', '{}', 60000, 64, (err) => {
      out.push(err.code, /cancelled/.test(err.message));
      console.log(JSON.stringify(out));
      iso.start(1);
      iso.run(0, 'setInterval(() => {}, 1000)', '{}', 60000, 64, () => console.log('unexpected'));
      setTimeout(() => process.exit(7), 50);
    });
    setTimeout(() => iso.stop(), 50);`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 });
  assert.equal(r.signal, null, r.stderr);
  assert.equal(r.status, 7, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim()), ['ERR_NOT_STARTED', 'INTERNAL', true]);
});
