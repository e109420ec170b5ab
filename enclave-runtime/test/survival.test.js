'use strict';
// Hostile code hurts only its own activation: each hostile action runs on a real
// owner next to benign activations running at the same time, and must end with
// its own clear outcome while the benign ones succeed and the owner keeps serving.
//
//   cd enclave-runtime && node --test test/survival.test.js

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');

const { startOwner, activate, ADDON } = require('./gate-client');
const need = require('./need');

const BENIGN = 'async function main(p) { await new Promise((r) => setTimeout(r, 20)); return { echo: p.n * 2 }; }';

// run: extra fields of the hostile run; want(res): asserts its outcome.
const developer = (re) => (res) => {
  assert.equal(res.outcome, 'developer', JSON.stringify(res).slice(0, 400));
  assert.match(res.result.error, re);
};
const HOSTILE = [
  { name: 'kill the platform', code: 'function main() { process.kill(process.ppid, "SIGTERM"); return {}; }',
    want: developer(/^An error has occurred: Error: TeeMate: process.kill \(signals\) is not available/) },
  { name: 'kill the owner', code: 'function main() { process.kill(process.pid, "SIGKILL"); return {}; }',
    want: developer(/^An error has occurred: Error: TeeMate: process.kill/) },
  { name: 'setuid (aborts an embedder without the refusal)', code: 'function main() { process.setuid(0); return {}; }',
    want: developer(/^An error has occurred: Error: TeeMate: process.setuid \(credentials\)/) },
  { name: 'process.exit', code: 'function main() { process.exit(7); }',
    want: developer(/^An error has occurred: the action called process.exit\(7\)\.$/) },
  { name: 'process.abort', code: 'function main() { process.abort(); }',
    want: developer(/^An error has occurred: the action called process.abort\(\)\.$/) },
  { name: 'unhandled rejection', code: 'function main() { Promise.reject(new Error("nobody listens")); return new Promise(() => {}); }',
    want: developer(/^An error has occurred: Error: nobody listens$/) },
  { name: 'stack overflow', code: 'function main() { function f() { return f() + 1; } return f(); }',
    want: developer(/Maximum call stack size exceeded/) },
  { name: 'infinite loop', code: 'function main() { for (;;) {} }', run: { timeoutMs: 500 },
    want: (res) => assert.equal(res.outcome, 'timeout') },
  { name: 'fork bomb', code: `function main() {
      let started = 0;
      for (let i = 0; i < 2000; i++) {
        try { require('child_process').fork('/bin/true'); started++; } catch (e) {}
        try { new (require('worker_threads').Worker)('for(;;){}', { eval: true }); started++; } catch (e) {}
        try { process.binding('spawn_sync'); started++; } catch (e) {}
      }
      return { started };
    }`,
  want: (res) => assert.deepEqual(res.result, { started: 0 }) },
  { name: '100 MB of console output', code: `function main() {
      const line = 'x'.repeat(1023);
      for (let i = 0; i < 100 * 1024; i++) console.log(line);
      return { done: true };
    }`, run: { logLimitBytes: 1024 * 1024, timeoutMs: 30000 },
  want: (res) => {
    assert.equal(res.outcome, 'success');
    assert.ok(res.logs.length <= 1025, `${res.logs.length} lines`);
    assert.equal(res.logs.at(-1).line, 'Logs were truncated because the total bytes size exceeds the limit of 1048576 bytes.');
  } },
  { name: '100 MB of output without a newline', code: `function main() {
      const chunk = 'y'.repeat(10 * 1024 * 1024);
      for (let i = 0; i < 10; i++) process.stdout.write(chunk);
      return { done: true };
    }`, run: { logLimitBytes: 1024 * 1024, memoryMB: 256 },
  want: (res) => {
    assert.equal(res.outcome, 'success');
    assert.deepEqual(res.logs.map((l) => l.line), ['Logs were truncated because the total bytes size exceeds the limit of 1048576 bytes.']);
  } },
  { name: 'result over 1 MB', code: 'function main() { return { big: "x".repeat(2 * 1024 * 1024) }; }',
    want: developer(/^The action produced a response that exceeded the allowed length: 2097162 > 1048576 bytes\.$/) },
  { name: 'deep JSON result', code: 'function main() { let o = {}; for (let i = 0; i < 100000; i++) o = { o }; return o; }',
    want: developer(/^An error has occurred: RangeError: Maximum call stack size exceeded$/) },
  { name: 'allocation storm (heap)', code: 'function main() { const a = []; for (;;) a.push(new Array(1e6).fill(1)); }', run: { memoryMB: 128 },
    want: (res) => assert.equal(res.outcome, 'memory') },
  { name: 'allocation storm (buffers)', code: 'function main() { const b = []; for (;;) b.push(Buffer.alloc(64 << 20)); }', run: { memoryMB: 128 },
    backends: ['addon'], // a Worker's resourceLimits do not count ArrayBuffers (README)
    want: (res) => assert.equal(res.outcome, 'memory') },
  { name: 'timers and servers left open', code: `function main() {
      setInterval(() => {}, 1);
      require('timers').setInterval(() => console.log('still here'), 1);
      let listening = false;
      try { require('net').createServer().listen(0); listening = true; } catch (e) {}
      return { listening };
    }`,
  want: (res) => assert.deepEqual(res.result, { listening: false }) },
  { name: 'the gate socket', code: `function main() {
      return new Promise((resolve) => {
        const s = require('net').connect(process.env.GATE);
        s.on('connect', () => resolve({ reached: true }));
        s.on('error', (e) => resolve({ refused: e.message }));
      });
    }`, run: { network: true }, gateEnv: true,
  want: (res) => assert.match(res.result.refused, /^TeeMate: connecting to unix sockets is not available/) },
];

for (const isolate of ['addon', 'worker']) {
  const skip = need.skip(isolate === 'addon' && !fs.existsSync(ADDON) && `the isolate addon is not built (${ADDON})`);
  test(`hostile actions beside benign ones (${isolate})`, { skip }, async (t) => {
    const owner = await startOwner({ slots: 4, isolate, args: ['--prewarm', '3'] });
    try {
      let n = 0;
      for (const h of HOSTILE) {
        if (h.backends && !h.backends.includes(isolate)) continue;
        await t.test(h.name, async () => {
          const env = h.gateEnv ? { GATE: owner.sock } : {};
          const hostile = activate(owner, { code: h.code }, { timeoutMs: 10000, memoryMB: 128, env, ...h.run });
          const benign = [];
          for (let i = 0; i < 2; i++) {
            const k = ++n;
            benign.push(activate(owner, { code: BENIGN }, { value: { n: k } }).then((r) => ({ k, r })));
          }
          const res = await hostile;
          h.want(res);
          for (const { k, r } of await Promise.all(benign)) {
            assert.equal(r.outcome, 'success', `benign activation beside "${h.name}": ${JSON.stringify(r).slice(0, 300)}`);
            assert.deepEqual(r.result, { echo: k * 2 });
          }
          assert.equal(owner.child.exitCode, null, 'the owner is alive');
        });
      }
      await t.test('the owner serves on and its slots are all back', async () => {
        const r = await activate(owner, { code: BENIGN }, { value: { n: 21 } });
        assert.deepEqual(r.result, { echo: 42 });
        const c = await owner.connect();
        const pong = await c.request({ type: 'ping' });
        c.close();
        assert.equal(pong.free, 4);
        assert.equal(pong.quarantined, 0);
      });
    } finally {
      await owner.stop();
    }
  });
}
