'use strict';
// Runtime fidelity (issue #18, item 6): actions behave as on OpenWhisk's Node.js runtime where
// the shared enclave used to differ. Each case runs on a real owner, with both isolate backends:
//
//   * global fetch() reaches a service (it used to freeze until the time limit: fetch keeps its
//     connection alive, and that open handle held the answer);
//   * without network fetch fails at once, with the reason in its message;
//   * a promise that never settles is a time-out at the time limit (it used to be a platform
//     error the moment the loop ran dry);
//   * a resolved result is answered at once, whatever handles the action left open;
//   * the openwhisk client is there to require, read-only, as on OpenWhisk's runtime.
//
//   cd enclave-runtime && node --test test/fidelity.test.js

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const http = require('http');
const path = require('path');

const { startOwner, activate, ADDON } = require('./gate-client');
const need = require('./need');

const MODULES = path.join(__dirname, '..', 'modules', 'node_modules');

for (const isolate of ['addon', 'worker']) {
  const skip = need.skip(isolate === 'addon' && !fs.existsSync(ADDON) && `the isolate addon is not built (${ADDON})`);
  test(`runtime fidelity (${isolate})`, { skip }, async (t) => {
    // A service on the host's loopback, offered to actions with network by --egress-allow
    // (what an operator does for a service of its own); it answers with keep-alive on.
    const served = [];
    const srv = http.createServer((req, res) => {
      served.push(req.url);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ path: req.url }));
    });
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const port = srv.address().port;
    const owner = await startOwner({ slots: 2, isolate, args: ['--egress-allow', `127.0.0.1:${port}`] });
    try {
      const timed = async (code, run) => {
        const t0 = Date.now();
        const res = await activate(owner, { code }, { timeoutMs: 5000, ...run });
        return { res, ms: Date.now() - t0 };
      };

      await t.test('fetch() with network answers at once', async () => {
        const { res, ms } = await timed(`async function main() {
          const r = await fetch('http://127.0.0.1:${port}/hello');
          return { status: r.status, body: await r.json() };
        }`, { network: true });
        assert.equal(res.outcome, 'success', JSON.stringify(res).slice(0, 400));
        assert.deepEqual(res.result, { status: 200, body: { path: '/hello' } });
        assert.ok(ms < 4000, `answered after ${ms} ms: the kept-alive connection held it`);
      });

      await t.test('fetch() without network fails at once with the reason', async () => {
        const { res, ms } = await timed(`async function main() {
          try { await fetch('http://127.0.0.1:${port}/'); return { fetched: true }; }
          catch (e) { return { message: e.message, code: e.code }; }
        }`, {});
        assert.equal(res.outcome, 'success', JSON.stringify(res).slice(0, 400));
        assert.deepEqual(res.result, {
          message: 'TeeMate: fetch (network) is not available to this action: it was not given network access (the action annotation "network": true)',
          code: 'ERR_TEEMATE_REFUSED',
        });
        assert.ok(ms < 4000, `answered after ${ms} ms`);
      });

      await t.test('a promise that never settles is a time-out at the time limit', async () => {
        const { res, ms } = await timed('function main() { return new Promise(() => {}); }', { timeoutMs: 1500 });
        assert.equal(res.type, 'result', JSON.stringify(res));
        assert.equal(res.outcome, 'timeout');
        assert.deepEqual(res.result, { error: 'The action exceeded its time limits of 1500 milliseconds.' });
        assert.ok(ms >= 1400, `answered after ${ms} ms, before the time limit`);
      });

      await t.test('a resolved result is answered at once despite open handles', async () => {
        const { res, ms } = await timed(`function main() {
          setInterval(() => {}, 10);
          return new Promise((resolve) => {
            const s = require('net').connect(${port}, '127.0.0.1', () => resolve({ open: !s.destroyed }));
          });
        }`, { network: true });
        assert.equal(res.outcome, 'success', JSON.stringify(res).slice(0, 400));
        assert.deepEqual(res.result, { open: true });
        assert.ok(ms < 4000, `answered after ${ms} ms: an open socket held it`);
      });

      await t.test('require(\'openwhisk\') loads the runtime\'s copy, read-only', { skip: need.skip(!fs.existsSync(MODULES) &&
        `the runtime's modules are not installed (${MODULES}); run make build`) }, async () => {
        const { res } = await timed(`function main() {
          const ow = require('openwhisk');
          const where = require.resolve('openwhisk');
          let write;
          try { require('fs').writeFileSync(where, ''); write = 'written'; } catch (e) { write = e.code; }
          return { type: typeof ow, where, write };
        }`, {});
        assert.equal(res.outcome, 'success', JSON.stringify(res).slice(0, 400));
        assert.equal(res.result.type, 'function');
        assert.equal(res.result.where, path.join(fs.realpathSync(MODULES), 'openwhisk', 'lib', 'main.js'));
        assert.equal(res.result.write, 'EACCES');
      });

      await t.test('the owner serves on with all slots free', async () => {
        const r = await activate(owner, { code: 'function main() { return { ok: true }; }' }, {});
        assert.deepEqual(r.result, { ok: true });
        const c = await owner.connect();
        const pong = await c.request({ type: 'ping' });
        c.close();
        assert.equal(pong.free, 2);
        assert.equal(pong.quarantined, 0);
      });
      assert.ok(served.includes('/hello'));
    } finally {
      await owner.stop();
      srv.closeAllConnections();
      srv.close();
    }
  });
}
