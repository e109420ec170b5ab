'use strict';
// End-to-end tests of the gate: owner.js runs as a real child process on a temp
// socket and every activation runs real user code in a new isolate. The suite runs
// once per isolate backend that is available.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { startOwner, activate, frame, zipStored, ADDON } = require('./gate-client');
const need = require('./need');

const BACKENDS = [
  { name: 'worker' },
  { name: 'addon', skip: need.skip(!fs.existsSync(ADDON) && `isolate addon not built (${ADDON}); run make -C node-isolate-patch`) },
];

function code(fn) {
  return { code: fn };
}

async function healthy(owner) {
  const c = await owner.connect();
  const pong = await c.request({ type: 'ping' });
  c.close();
  assert.equal(pong.type, 'pong');
  const r = await activate(owner, code('function main(p) { return { ok: p.n + 1 }; }'), { value: { n: 41 } });
  assert.equal(r.outcome, 'success');
  assert.deepEqual(r.result, { ok: 42 });
  return pong;
}

for (const backend of BACKENDS) {
  test(`gate with ${backend.name} isolates`, { skip: backend.skip, concurrency: false }, async (t) => {
    const owner = await startOwner({ slots: 64, isolate: backend.name });
    t.after(() => owner.stop());
    assert.equal(owner.ready.ready, true);
    assert.equal(owner.ready.isolate, backend.name);

    await t.test('ping before hello, then hello/welcome', async () => {
      const c = await owner.connect();
      const pong = await c.request({ type: 'ping' });
      const { prepared, ...rest } = pong;
      assert.deepEqual(rest, { type: 'pong', slots: 64, free: 64, quarantined: 0, isolate: backend.name,
        prewarm: backend.name === 'addon' ? 4 : 0, auth: false, authRefused: 0, kid: rest.kid });
      assert.match(rest.kid, /^[0-9a-f]{32}$/);
      assert.ok(Number.isInteger(prepared) && prepared >= 0 && prepared <= rest.prewarm, `prepared ${prepared}`);
      const w = await c.request({ type: 'hello', version: 1, sandbox: 'wsk0_1_guest_hello' });
      assert.equal(w.type, 'welcome');
      assert.equal(w.version, 1);
      assert.equal(w.enclave, 'test-0');
      assert.equal(w.image, 'nodejs:20');
      assert.equal(w.mode, 'direct');
      assert.equal(w.isolate, backend.name);
      assert.equal(w.slots, 64);
      assert.equal(w.free, 64);
      assert.deepEqual(w.attestation, { type: 'simulated', kid: pong.kid });
      c.close();
    });

    await t.test('acquire, init, run, release with parameters and logs', async () => {
      const c = await owner.connect();
      const acq = await c.attach();
      assert.equal(acq.type, 'acquired');
      assert.ok(Number.isInteger(acq.tcs) && acq.tcs >= 0 && acq.tcs < 64);
      const ini = await c.request({ type: 'init', name: 'hello', main: 'main', binary: false,
        code: 'function main(p) { console.log("hello", p.name); console.error("to stderr");' +
          ' process.stdout.write("no newline"); return { greeting: "hi " + p.name }; }' });
      assert.equal(ini.type, 'initialized');
      assert.equal(typeof ini.ms, 'number');
      const res = await c.request({ type: 'run', value: { name: 'Bob' }, timeoutMs: 5000, memoryMB: 128,
        logLimitBytes: 1 << 20 });
      assert.equal(res.type, 'result');
      assert.equal(res.outcome, 'success');
      assert.deepEqual(res.result, { greeting: 'hi Bob' });
      const lines = res.logs.map((l) => `${l.stream}:${l.line}`).sort();
      assert.deepEqual(lines, ['stderr:to stderr', 'stdout:hello Bob', 'stdout:no newline']);
      for (const l of res.logs) assert.ok(!Number.isNaN(Date.parse(l.time)), l.time);
      for (const k of ['isolateMs', 'runMs']) assert.equal(typeof res.timings[k], 'number');
      // The addon frees the isolate after the answer: its teardown is not known yet.
      if (backend.name === 'addon') assert.equal(res.timings.teardownMs, null);
      else assert.equal(typeof res.timings.teardownMs, 'number');
      assert.deepEqual(await c.request({ type: 'release' }), { type: 'released' });
      c.close();
    });

    await t.test('console.* logs as Node formats it, in order with process.stdout/stderr, without the stream module', async () => {
      // What the action does, run once here into Node's own Console over plain sinks: the
      // activation's lines must be exactly these (the console is Node's, the sinks are ours).
      const calls = (con) => {
        con.log('%s has %d items costing %i, %o', 'cart', 3, 42.5, { a: [1, { b: 'x' }] });
        con.info({ nested: { deep: { deeper: { deepest: 1 } } } }, [1, 2, 3], null, undefined);
        con.warn('warned %j', { j: 1 });
        con.error(new Error('boom').message);
        con.debug('multi\nline');
        con.group('group');
        con.log('indented');
        con.groupEnd();
        con.count();
        con.count('x');
        con.count();
        con.dir({ d: { e: { f: { g: 1 } } } }, { depth: 0 });
        con.table([{ a: 1, b: 'two' }, { a: 3 }]);
        con.assert(1 === 2, 'assertion %s', 'failed');
      };
      const want = [];
      const sink = (stream) => ({ write(chunk) { for (const l of String(chunk).split('\n').slice(0, -1)) want.push(`${stream}:${l}`); return true; } });
      calls(new console.Console({ stdout: sink('stdout'), stderr: sink('stderr'), ignoreErrors: false, colorMode: false }));
      // Then console and the process streams interleaved: the lines stay in the order written.
      want.push('stdout:first', 'stdout:second', 'stderr:third', 'stdout:fourth');
      const action = `function main() {
        (${calls.toString()})(console);
        const stream = process.moduleLoadList.includes('NativeModule stream');
        console.log('first');
        process.stdout.write('second\\n');
        process.stderr.write('third\\n');
        console.log('fourth');
        return { stream };
      }`;
      const res = await activate(owner, code(action), { logLimitBytes: 1 << 20 });
      assert.equal(res.outcome, 'success', JSON.stringify(res));
      assert.deepEqual(res.logs.map((l) => `${l.stream}:${l.line}`), want);
      // The times order the lines across the two streams (the invoker sorts the record by them,
      // stably): increasing, with microseconds, though many share a millisecond; only the lines
      // of one write (one stream, one pipe) share a time.
      for (const [i, l] of res.logs.entries()) {
        assert.match(l.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
        const p = res.logs[i - 1];
        if (p) assert.ok(l.time > p.time || (l.time === p.time && l.stream === p.stream), `${p.stream} ${p.time} then ${l.stream} ${l.time}`);
      }
      // In an addon environment console.* never makes process.stdout's stream (a Worker's
      // console writes to its own stdio streams, which exist from its start).
      if (backend.name === 'addon') assert.equal(res.result.stream, false, 'console.log loaded the stream module');
    });

    await t.test('a patched process.stdout.write sees console.log, as in Node', async () => {
      const action = `function main() {
        const seen = [];
        const orig = process.stdout.write;
        process.stdout.write = function patched(chunk, ...rest) { seen.push(String(chunk)); return orig.call(this, chunk, ...rest); };
        console.log('through the patch %d', 1);
        process.stdout.write = orig;
        console.log('after');
        process.stderr.write = () => { throw new Error('a broken stream'); };
        console.error('swallowed, as by Node');
        return { seen };
      }`;
      const res = await activate(owner, code(action), { logLimitBytes: 1 << 20 });
      assert.equal(res.outcome, 'success', JSON.stringify(res));
      assert.deepEqual(res.result.seen, ['through the patch 1\n']);
      assert.deepEqual(res.logs.map((l) => `${l.stream}:${l.line}`), ['stdout:through the patch 1', 'stdout:after']);
    });

    await t.test('async main and the forms of main', async (t2) => {
      const cases = [
        { name: 'async function', code: 'async function main(p) { await new Promise((r) => setTimeout(r, 20)); return { v: p.v * 2 }; }', want: { v: 4 } },
        { name: 'promise', code: 'function main(p) { return new Promise((r) => setImmediate(() => r({ v: p.v }))); }', want: { v: 2 } },
        { name: 'exports.main', code: 'exports.main = (p) => ({ v: p.v, how: "exports" });', want: { v: 2, how: 'exports' } },
        { name: 'module.exports.main', code: 'module.exports = { main: (p) => ({ how: "module" }) };', want: { how: 'module' } },
        { name: 'other name', code: 'function hello(p) { return { how: "named" }; }', main: 'hello', want: { how: 'named' } },
        { name: 'undefined result is {}', code: 'function main() { return; }', want: {} },
        { name: 'array result', code: 'function main() { return [1, 2]; }', want: [1, 2] },
        { name: 'require builtins', code: 'const crypto = require("crypto"); function main() { return { h: crypto.createHash("sha256").update("x").digest("hex").slice(0, 8) }; }', want: { h: '2d711642' } },
        { name: 'pending timer does not hold the answer', code: 'function main() { setInterval(() => {}, 1000); setTimeout(() => {}, 100000); return { done: true }; }', want: { done: true } },
      ];
      for (const c of cases) {
        await t2.test(c.name, async () => {
          const r = await activate(owner, { code: c.code, main: c.main || 'main' }, { value: { v: 2 } });
          assert.equal(r.outcome, 'success', JSON.stringify(r));
          assert.deepEqual(r.result, c.want);
        });
      }
    });

    await t.test('env: __OW_* and init env visible, nothing leaks to the next activation', async () => {
      const first = await activate(owner, {
        code: 'function main() { const seen = { ...process.env }; process.env.LEAK = "yes"; return seen; }',
        env: { __OW_NAMESPACE: 'guest', __OW_ACTION_NAME: '/guest/env', MY_PARAM: 'init' },
      }, { env: { __OW_ACTIVATION_ID: 'a1', __OW_DEADLINE: '1700000060200', MY_PARAM: 'run' } });
      assert.equal(first.outcome, 'success');
      assert.deepEqual(first.result, { __OW_NAMESPACE: 'guest', __OW_ACTION_NAME: '/guest/env',
        MY_PARAM: 'run', __OW_ACTIVATION_ID: 'a1', __OW_DEADLINE: '1700000060200', TMPDIR: '/tmp' },
      'exactly the merged env (and TMPDIR, the action\'s own /tmp); nothing of the owner (PATH, HOME) is visible');
      const second = await activate(owner, code('function main() { return { leak: process.env.LEAK || null, id: process.env.__OW_ACTIVATION_ID || null }; }'),
        { env: { __OW_ACTIVATION_ID: 'a2' } });
      assert.deepEqual(second.result, { leak: null, id: 'a2' });
    });

    await t.test('error outcomes with OpenWhisk texts', async (t2) => {
      const cases = [
        { name: 'result with error', code: 'function main() { return { error: "nope" }; }', outcome: 'application', result: { error: 'nope' } },
        { name: 'rejected promise', code: 'async function main() { throw new Error("bad thing"); }', outcome: 'application',
          check: (r) => { assert.equal(r.error.message, 'bad thing'); assert.equal(r.error.name, 'Error'); } },
        { name: 'rejected with nothing', code: 'function main() { return Promise.reject(); }', outcome: 'application', result: { error: {} } },
        { name: 'thrown error', code: 'function main() { throw new Error("boom"); }', outcome: 'developer', result: { error: 'An error has occurred: Error: boom' } },
        { name: 'non-dictionary', code: 'function main() { return 42; }', outcome: 'developer', result: { error: 'The action did not return a dictionary.' } },
        { name: 'string result', code: 'function main() { return "s"; }', outcome: 'developer', result: { error: 'The action did not return a dictionary.' } },
        { name: 'missing main', code: 'function other() {}', outcome: 'developer', result: { error: "Initialization has failed due to: Action entrypoint 'main' is not a function." } },
        { name: 'top-level throw', code: 'throw new TypeError("at load");', outcome: 'developer', result: { error: 'Initialization has failed due to: TypeError: at load' } },
        { name: 'async uncaught', code: 'function main() { setTimeout(() => { throw new Error("later"); }, 5); return new Promise(() => {}); }', outcome: 'developer', result: { error: 'An error has occurred: Error: later' } },
        { name: 'circular result', code: 'function main() { const o = {}; o.o = o; return o; }', outcome: 'developer', check: (r) => assert.match(r.error, /^An error has occurred: TypeError: Converting circular/) },
        { name: 'process.exit', code: 'function main() { process.exit(3); }', outcome: 'developer', check: (r) => assert.match(r.error, /process\.exit\(3\)/) },
      ];
      for (const c of cases) {
        await t2.test(c.name, async () => {
          const r = await activate(owner, code(c.code), {});
          assert.equal(r.type, 'result', JSON.stringify(r));
          assert.equal(r.outcome, c.outcome, JSON.stringify(r));
          if (c.result) assert.deepEqual(r.result, c.result);
          if (c.check) c.check(r.result);
        });
      }
      await healthy(owner);
    });

    await t.test('init errors', async (t2) => {
      const cases = [
        { name: 'syntax error', init: { code: 'function main( {' }, re: /^Initialization has failed due to: SyntaxError/ },
        { name: 'no code', init: { code: '' }, re: /^Missing main\/no code to execute\.$/ },
        { name: 'main not an identifier', init: { code: 'function main(){}', main: 'x; evil()' }, re: /not a valid name/ },
        { name: 'binary not a zip', init: { code: Buffer.from('not a zip').toString('base64'), binary: true }, re: /^Initialization has failed due to: the action archive is not a zip file/ },
      ];
      for (const c of cases) {
        await t2.test(c.name, async () => {
          const r = await activate(owner, c.init, {});
          assert.equal(r.stage, 'init');
          assert.equal(r.msg.type, 'error');
          assert.equal(r.msg.class, 'init');
          assert.match(r.msg.message, c.re);
        });
      }
    });

    await t.test('an init frame may exceed 2 MiB (up to 64 MiB)', async () => {
      const big = `// ${'x'.repeat(3 << 20)}\nfunction main() { return { big: true }; }`;
      const r = await activate(owner, code(big), {});
      assert.deepEqual(r.result, { big: true });
    });

    await t.test('logs beyond the limit are dropped with the truncation line', async () => {
      const r = await activate(owner, code('function main() { for (let i = 0; i < 100; i++) console.log("line " + i); return {}; }'),
        { logLimitBytes: 50 });
      assert.equal(r.outcome, 'success');
      const last = r.logs[r.logs.length - 1];
      assert.deepEqual([last.stream, last.line], ['stderr', 'Logs were truncated because the total bytes size exceeds the limit of 50 bytes.']);
      assert.deepEqual(r.logs.slice(0, -1).map((l) => l.line), ['line 0', 'line 1', 'line 2', 'line 3', 'line 4', 'line 5', 'line 6']);
    });

    await t.test('timeout and memory bomb end the isolate, not the runtime', async () => {
      const to = await activate(owner, code('function main() { console.log("before loop"); for (;;) {} }'), { timeoutMs: 300 });
      assert.equal(to.outcome, 'timeout');
      assert.deepEqual(to.result, { error: 'The action exceeded its time limits of 300 milliseconds.' });
      if (backend.name === 'worker') assert.deepEqual(to.logs.map((l) => l.line), ['before loop']);
      const mem = await activate(owner, code('function main() { const a = []; for (;;) a.push(new Array(100000).fill(a.length)); }'), { memoryMB: 64 });
      assert.equal(mem.outcome, 'memory', JSON.stringify(mem));
      assert.deepEqual(mem.result, { error: 'The action exhausted its memory and was aborted.' });
      const pong = await healthy(owner);
      assert.equal(pong.free, 64);
    });

    await t.test('an infinite loop does not block a concurrent activation', async () => {
      const order = [];
      const loop = activate(owner, code('function main() { for (;;) {} }'), { timeoutMs: 2000 }).then((r) => { order.push('loop'); return r; });
      await new Promise((r) => setTimeout(r, 100));
      const quick = await activate(owner, code('function main() { return { quick: true }; }'), {});
      order.push('quick');
      assert.deepEqual(quick.result, { quick: true });
      assert.equal((await loop).outcome, 'timeout');
      assert.deepEqual(order, ['quick', 'loop']);
    });

    await t.test('50 concurrent activations get their own results', async () => {
      const runs = Array.from({ length: 50 }, (_, i) => activate(owner,
        code('async function main(p) { await new Promise((r) => setTimeout(r, 10)); return { i: p.i, sq: p.i * p.i }; }'),
        { value: { i: i } }));
      const results = await Promise.all(runs);
      results.forEach((r, i) => {
        assert.equal(r.outcome, 'success', JSON.stringify(r));
        assert.deepEqual(r.result, { i, sq: i * i });
      });
      const c = await owner.connect();
      assert.equal((await c.request({ type: 'ping' })).free, 64);
      c.close();
    });

    await t.test('globals never cross activations, sequential or concurrent', async () => {
      const setter = 'async function main(p) { globalThis.secret = p.s; Object.prototype.polluted = 1; await new Promise((r) => setTimeout(r, 300)); return { mine: globalThis.secret }; }';
      const reader = 'function main() { return { secret: globalThis.secret === undefined ? null : globalThis.secret, polluted: ({}).polluted === undefined ? null : 1 }; }';
      const a = activate(owner, code(setter), { value: { s: 'tenant-a' } });
      await new Promise((r) => setTimeout(r, 120));
      const concurrent = await activate(owner, code(reader), {});
      assert.deepEqual(concurrent.result, { secret: null, polluted: null });
      assert.deepEqual((await a).result, { mine: 'tenant-a' });
      const after = await activate(owner, code(reader), {});
      assert.deepEqual(after.result, { secret: null, polluted: null });
    });

    await t.test('zipped action with node_modules, cached by sha256', async () => {
      const archive = zipStored([
        { name: 'package.json', data: JSON.stringify({ name: 'z', main: 'lib/entry.js' }) },
        { name: 'lib/entry.js', data: 'const pad = require("leftpad-ish"); exports.main = (p) => ({ padded: pad(p.s, 6), dir: __dirname.endsWith("lib") });', deflate: true },
        { name: 'node_modules/leftpad-ish/package.json', data: '{"name":"leftpad-ish","main":"pad.js"}' },
        { name: 'node_modules/leftpad-ish/pad.js', data: 'module.exports = (s, n) => "*".repeat(n - s.length) + s;' },
      ]);
      const init = { code: archive.toString('base64'), binary: true };
      for (const s of ['ab', 'abcd']) {
        const r = await activate(owner, init, { value: { s } });
        assert.equal(r.outcome, 'success', JSON.stringify(r));
        assert.deepEqual(r.result, { padded: '*'.repeat(6 - s.length) + s, dir: true });
      }
      const cached = fs.readdirSync(path.join(owner.dir, 'work', 'actions')).filter((n) => !n.startsWith('.'));
      assert.equal(cached.length, 1, 'one cache entry for two inits of the same archive');
      const idx = zipStored([{ name: 'index.js', data: 'exports.run = { deep: () => ({ ok: "index" }) };' }]);
      const r2 = await activate(owner, { code: idx.toString('base64'), binary: true, main: 'run.deep' }, {});
      assert.deepEqual(r2.result, { ok: 'index' });
    });

    await t.test('hostile zips are refused at init', async (t2) => {
      const cases = [
        { name: 'traversal', files: [{ name: 'index.js', data: 'exports.main=()=>({})' }, { name: '../../escape.js', data: 'x' }], re: /escapes the action directory/ },
        { name: 'symlink', files: [{ name: 'index.js', data: 'exports.main=()=>({})' }, { name: 'l', data: '/etc', mode: 0o120777 }], re: /symbolic link/ },
        { name: 'no entry point', files: [{ name: 'lib.js', data: 'x' }], re: /Zipped actions must contain either package.json or index.js at the root\./ },
      ];
      for (const c of cases) {
        await t2.test(c.name, async () => {
          const r = await activate(owner, { code: zipStored(c.files).toString('base64'), binary: true }, {});
          assert.equal(r.stage, 'init', JSON.stringify(r));
          assert.equal(r.msg.class, 'init');
          assert.match(r.msg.message, /^Initialization has failed due to: /);
          assert.match(r.msg.message, c.re);
        });
      }
      assert.equal(fs.existsSync(path.join(owner.dir, 'work', 'escape.js')), false);
      assert.equal(fs.existsSync(path.join(owner.dir, 'escape.js')), false);
    });

    await t.test('malformed frames close only their connection', async (t2) => {
      const closing = [
        { name: 'zero length', bytes: Buffer.from([0, 0, 0, 0]), re: /zero-length/ },
        { name: 'length over 64 MiB', bytes: Buffer.from([0x04, 0xc4, 0xb4, 0x00]), re: /80000000 bytes exceeds the limit of 67108864/ },
        { name: 'not JSON', bytes: frame('{nope'), re: /not valid JSON/ },
        { name: 'no type', bytes: frame({ version: 1 }), re: /string "type"/ },
        { name: 'oversize run', bytes: frame({ type: 'run', value: { pad: 'x'.repeat(3 << 20) } }), re: /run frame of \d+ bytes exceeds the limit of 2097152/ },
        { name: 'hello version wrong type', bytes: frame({ type: 'hello', version: '1' }), re: /hello.version must be a number/ },
      ];
      for (const c of closing) {
        await t2.test(c.name, async () => {
          const cl = await owner.connect();
          cl.writeRaw(c.bytes);
          const m = await cl.next();
          assert.equal(m.type, 'error');
          assert.equal(m.class, 'protocol');
          assert.match(m.message, c.re);
          await cl.waitClosed();
        });
      }
      await t2.test('unsupported version', async () => {
        const cl = await owner.connect();
        const m = await cl.request({ type: 'hello', version: 2 });
        assert.equal(m.class, 'version');
        await cl.waitClosed();
      });
      await t2.test('wrong field types inside a held slot', async () => {
        const bad = [
          { type: 'init', code: 42 },
          { type: 'init', code: 'function main(){}', env: { A: 1 } },
          { type: 'init', code: 'function main(){}', binary: 'yes' },
        ];
        for (const b of bad) {
          const cl = await owner.connect();
          await cl.attach();
          const m = await cl.request(b);
          assert.equal(m.class, 'protocol', JSON.stringify(b));
          await cl.waitClosed();
        }
        const runs = [{ timeoutMs: '100' }, { timeoutMs: 50 }, { memoryMB: 1e6 }, { value: 'str' }, { logLimitBytes: -1 }, { env: [] }];
        for (const b of runs) {
          const cl = await owner.connect();
          await cl.attach();
          assert.equal((await cl.request({ type: 'init', code: 'function main(){return {}}' })).type, 'initialized');
          const m = await cl.request({ type: 'run', ...b });
          assert.equal(m.class, 'protocol', JSON.stringify(b));
          await cl.waitClosed();
        }
      });
      await t2.test('out-of-order messages are state errors on an open connection', async () => {
        const cl = await owner.connect();
        assert.equal((await cl.request({ type: 'acquire' })).class, 'state', 'acquire before hello');
        assert.equal((await cl.request({ type: 'hello', version: 1 })).type, 'welcome');
        assert.equal((await cl.request({ type: 'init', code: 'x' })).class, 'state', 'init before acquire');
        assert.equal((await cl.request({ type: 'release' })).class, 'state', 'release before acquire');
        const unknown = await cl.request({ type: 'teleport' });
        assert.deepEqual([unknown.type, unknown.class], ['error', 'protocol']);
        assert.equal((await cl.request({ type: 'acquire' })).type, 'acquired', 'the connection stayed open');
        assert.equal((await cl.request({ type: 'acquire' })).class, 'state', 'second acquire');
        assert.equal((await cl.request({ type: 'run' })).class, 'state', 'run before init');
        assert.equal((await cl.request({ type: 'init', code: 'function main() { return { n: 1 }; }' })).type, 'initialized');
        assert.equal((await cl.request({ type: 'init', code: 'function main() {}' })).class, 'state', 'second init');
        const r = await cl.request({ type: 'run', tcs: 63, value: {} });
        assert.deepEqual(r.result, { n: 1 }, 'a client-sent slot id is ignored');
        assert.equal((await cl.request({ type: 'run' })).class, 'state', 'second run');
        assert.equal((await cl.request({ type: 'release' })).type, 'released');
        cl.close();
      });
      await t2.test('a connection closing mid-frame', async () => {
        const cl = await owner.connect();
        cl.writeRaw(Buffer.from([0, 0, 0, 50, 0x7b]));
        cl.socket.end();
        await cl.waitClosed();
      });
      const pong = await healthy(owner);
      assert.equal(pong.free, 64);
      assert.equal(owner.child.exitCode, null);
    });

    await t.test('stderr diagnostics are JSON lines', () => {
      const lines = owner.stderr.join('').split('\n').filter(Boolean);
      assert.ok(lines.length > 0);
      for (const l of lines) {
        const o = JSON.parse(l);
        assert.equal(typeof o.level, 'string');
        assert.equal(typeof o.msg, 'string');
      }
    });
  });

  test(`slots with ${backend.name} isolates: busy and quarantine`, { skip: backend.skip }, async (t) => {
    const owner = await startOwner({ slots: 2, isolate: backend.name });
    t.after(() => owner.stop());
    const ping = async () => {
      const c = await owner.connect();
      const p = await c.request({ type: 'ping' });
      c.close();
      return p;
    };

    await t.test('busy when all slots are taken', async () => {
      const a = await owner.connect();
      const b = await owner.connect();
      const c = await owner.connect();
      const ta = (await a.attach()).tcs;
      const tb = (await b.attach()).tcs;
      assert.deepEqual([ta, tb].sort(), [0, 1]);
      const busy = await c.attach();
      assert.deepEqual([busy.type, busy.class], ['error', 'busy']);
      assert.equal((await a.request({ type: 'release' })).type, 'released');
      assert.equal((await c.request({ type: 'acquire' })).tcs, ta, 'the freed slot is handed out again');
      for (const x of [a, b, c]) x.close();
      for (let i = 0; i < 50 && (await ping()).free !== 2; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal((await ping()).free, 2);
    });

    await t.test('a client vanishing mid-run quarantines its slot until teardown', async () => {
      const c = await owner.connect();
      await c.attach();
      assert.equal((await c.request({ type: 'init', code: 'function main() { const end = Date.now() + 800; while (Date.now() < end) {} return {}; }' })).type, 'initialized');
      c.send({ type: 'run', value: {}, timeoutMs: 5000 });
      await new Promise((r) => setTimeout(r, 150));
      c.close();
      await new Promise((r) => setTimeout(r, 100));
      const during = await ping();
      assert.deepEqual([during.free, during.quarantined], [1, 1]);
      let after = during;
      for (let i = 0; i < 100 && after.quarantined; i++) {
        await new Promise((r) => setTimeout(r, 50));
        after = await ping();
      }
      assert.deepEqual([after.free, after.quarantined], [2, 0]);
      const r = await activate(owner, code('function main() { return { again: true }; }'), {});
      assert.deepEqual(r.result, { again: true });
    });
  });
}

// Pings until pred(pong) holds (or gives up after ~10 s) and returns the last pong.
async function pingUntil(owner, pred) {
  let p;
  for (let i = 0; i < 500; i++) {
    const c = await owner.connect();
    p = await c.request({ type: 'ping' });
    c.close();
    if (pred(p)) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return p;
}

test('prewarm budget with addon isolates', { skip: BACKENDS[1].skip }, async (t) => {
  const owner = await startOwner({ slots: 6, isolate: 'addon', args: ['--prewarm', '2'] });
  t.after(() => owner.stop());
  assert.equal(owner.ready.prewarm, 2);

  await t.test('only the budget of slots holds a prepared environment', async () => {
    const p = await pingUntil(owner, (x) => x.prepared === 2);
    assert.deepEqual([p.prewarm, p.prepared], [2, 2]);
  });

  await t.test('a prepared slot is acquired first and reports the previous teardown', async () => {
    const runs = [];
    for (let i = 0; i < 3; i++) {
      await pingUntil(owner, (x) => x.prepared === 2);
      runs.push(await activate(owner, code('function main(p) { return { i: p.i }; }'), { value: { i } }));
    }
    runs.forEach((r, i) => {
      assert.equal(r.outcome, 'success');
      assert.deepEqual(r.result, { i });
      assert.equal(r.timings.teardownMs, null, 'freed after the answer');
    });
    assert.equal(typeof runs[2].timings.lastTeardownMs, 'number', 'slot 0 ran before: its teardown is known');
    assert.ok(runs[2].timings.lastTeardownMs >= 0);
  });

  await t.test('all six slots busy at once: cold slots run correctly, in fresh isolates', async () => {
    // Hold six connections so the four cold slots are used too; each run marks its global
    // scope and reports whether it found a mark (it never may).
    const conns = [];
    for (let i = 0; i < 6; i++) {
      const c = await owner.connect();
      const acq = await c.attach();
      assert.equal(acq.type, 'acquired');
      conns.push({ c, tcs: acq.tcs });
    }
    assert.deepEqual(conns.map((x) => x.tcs).sort(), [0, 1, 2, 3, 4, 5]);
    const src = 'function main(p) { const seen = typeof globalThis.mark; globalThis.mark = p.i;' +
      ' return { i: p.i, seen }; }';
    const results = await Promise.all(conns.map(async ({ c }, i) => {
      assert.equal((await c.request({ type: 'init', code: src })).type, 'initialized');
      return c.request({ type: 'run', value: { i }, timeoutMs: 20000 });
    }));
    results.forEach((r, i) => {
      assert.equal(r.outcome, 'success', JSON.stringify(r));
      assert.deepEqual(r.result, { i, seen: 'undefined' });
    });
    for (const { c } of conns) {
      assert.equal((await c.request({ type: 'release' })).type, 'released');
      c.close();
    }
    // Cold slots keep nothing after their teardown: the count returns to the budget, not more.
    const p = await pingUntil(owner, (x) => x.prepared === 2 && x.free === 6);
    assert.deepEqual([p.prepared, p.free], [2, 6]);
  });
});

// The bootstrap's prelude (stdio capture, console, process guards, timer tracking)
// runs while the addon prepares an environment; every activation below runs on the
// one prepared slot, so each gets an environment whose prelude ran for it alone.
test('prepared environments with the prelude: nothing of one activation reaches the next', { skip: BACKENDS[1].skip }, async (t) => {
  const owner = await startOwner({ slots: 1, isolate: 'addon', args: ['--prewarm', '1'] });
  t.after(() => owner.stop());
  const ready = () => pingUntil(owner, (x) => x.prepared === 1 && x.free === 1);
  const probe = 'function main() { console.log("probe"); return {' +
    ' globals: Object.getOwnPropertyNames(globalThis).sort(),' +
    ' env: process.env,' +
    ' cache: Object.keys(require.cache).length,' +
    ' handles: process._getActiveHandles().length,' +
    ' listeners: ["uncaughtException", "unhandledRejection", "exit"].map((e) => process.listenerCount(e)),' +
    ' polluted: ({}).polluted === undefined ? null : 1,' +
    ' exit: process.exit.name, setTimeout: setTimeout.name }; }';
  await ready();
  const baseline = await activate(owner, code(probe), { env: { __OW_ACTIVATION_ID: 'p1' } });
  assert.equal(baseline.outcome, 'success', JSON.stringify(baseline));
  assert.deepEqual(baseline.logs.map((l) => l.line), ['probe'], 'the prelude\'s own console warm-up is not logged');
  assert.deepEqual(baseline.result.env, { __OW_ACTIVATION_ID: 'p1', TMPDIR: '/tmp' });

  // Pollutes everything it can reach, including the prelude's plumbing, and leaves
  // timers behind (cancelled at the answer, require('timers') ones too: they are the
  // same tracked functions; anything else runs in this environment only).
  const dirty = await activate(owner, code(`async function main() {
    globalThis.secret = 'tenant-a'; process.env.LEAK = 'yes'; Object.prototype.polluted = 1;
    require.cache['/leak.js'] = { exports: 'secret' };
    setInterval(() => console.log('interval of A'), 1);
    require('timers').setTimeout(() => { globalThis.late = 1; console.log('late log of A'); }, 20);
    process.on('exit', () => console.log('exit of A'));
    process.removeAllListeners('uncaughtException');
    process.stdout.write = () => true; console.log = () => {}; process.exit = () => {};
    return { ok: true };
  }`), { env: { __OW_ACTIVATION_ID: 'a' } });
  assert.equal(dirty.outcome, 'success', JSON.stringify(dirty));
  assert.deepEqual(dirty.logs, []);

  await new Promise((r) => setTimeout(r, 50)); // A's timers would have fired by now
  await ready();
  const after = await activate(owner, code(probe), { env: { __OW_ACTIVATION_ID: 'p2' } });
  assert.equal(after.outcome, 'success', JSON.stringify(after));
  assert.deepEqual(after.logs.map((l) => l.line), ['probe'], 'capture works again and nothing of A is logged');
  assert.deepEqual(after.result, { ...baseline.result, env: { __OW_ACTIVATION_ID: 'p2', TMPDIR: '/tmp' } });

  // process.stdout is a stream of the isolate's own: piping into it is captured,
  // and it has no handle on the owner's stdout to write around the capture.
  await ready();
  const piped = await activate(owner, code(`async function main() {
    const { Readable } = require('stream');
    const src = Readable.from(['piped ', 'line\\n']);
    await new Promise((resolve) => { src.on('end', resolve); src.pipe(process.stdout); });
    process.stderr.write(Buffer.from('bytes\\n'), () => {});
    return { handle: process.stdout._handle === undefined ? null : 'present', tty: process.stdout.isTTY, fd: process.stderr.fd };
  }`));
  assert.equal(piped.outcome, 'success', JSON.stringify(piped));
  assert.deepEqual(piped.result, { handle: null, tty: false, fd: 2 });
  assert.deepEqual(piped.logs.map((l) => `${l.stream}:${l.line}`), ['stdout:piped line', 'stderr:bytes']);

  // An uncaught error is still a developer error with OpenWhisk's text: the
  // prelude's listener belongs to this activation's environment.
  await ready();
  const thrown = await activate(owner, code('function main() { setTimeout(() => { throw new Error("async boom"); }, 1); return new Promise(() => {}); }'));
  assert.equal(thrown.outcome, 'developer');
  assert.deepEqual(thrown.result, { error: 'An error has occurred: Error: async boom' });
});

test('the owner refuses a bad --prewarm', async (t) => {
  const bad = [['9', /--prewarm must be an integer from 0 to --slots \(4\) or "all", got "9"/], ['-1', /got "-1"/], ['two', /got "two"/]];
  for (const [v, re] of bad) {
    await t.test(v, () => assert.rejects(startOwner({ slots: 4, args: ['--prewarm', v] }), (e) => {
      const m = /^owner exited with 2: (\{.*\})\n?$/s.exec(e.message);
      assert.ok(m, e.message);
      const line = JSON.parse(m[1]);
      assert.equal(line.msg, 'bad arguments');
      assert.match(line.error, re);
      return true;
    }));
  }
});
