'use strict';
// The page pool (src/page_pool.h): a torn-down isolate's heap pages, zeroed,
// serve the next isolate without page faults. These tests hold
// the pool alone (page_pool_test.cc, real mmap'd memory), its options and
// counters in the addon, that an idle owner gives the pages back, and the
// attack the zeroing is for: after a tenant's isolate is gone, its secret is
// nowhere in the owner's memory, though its heap pages are still mapped there.

const { test, describe, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const addonPath = path.join(root, 'build', 'teemate_isolate.node');
if (!fs.existsSync(addonPath)) execFileSync('make', ['-C', root], { stdio: 'inherit' });
const iso = require(addonPath);

function run(slot, source) {
  return new Promise((resolve) => {
    iso.run(slot, source, '{}', 20000, 64, (err, result, stats) => resolve({ err, result, stats }));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, cond, ms = 10000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

test('the pool alone, over real memory (page_pool_test.cc)', () => {
  execFileSync('make', ['-C', root, '--no-print-directory', 'build/page_pool_test'], { stdio: 'pipe' });
  const out = execFileSync(path.join(root, 'build', 'page_pool_test'), { encoding: 'utf8' });
  assert.match(out, /page_pool_test: ok/);
});

describe('start() options', () => {
  after(() => iso.stop());

  test('pagePoolMB is a whole number of MiB, at most 4096', () => {
    for (const [bad, code] of [[-1, 'ERR_OUT_OF_RANGE'], [1.5, 'ERR_OUT_OF_RANGE'], [4097, 'ERR_OUT_OF_RANGE'],
      ['x', 'ERR_INVALID_ARG_TYPE'], [true, 'ERR_INVALID_ARG_TYPE']]) {
      assert.throws(() => iso.start(1, { pagePoolMB: bad }), (e) => e.code === code && /pagePoolMB/.test(e.message), String(bad));
    }
  });

  test('0 turns it off and says so', () => {
    iso.start(1, { prewarm: 0, pagePoolMB: 0 });
    assert.deepEqual(iso.info().pagePool, { off: 'off' });
    iso.stop();
  });

  test('on by default, 16 MiB', () => {
    iso.start(1, { prewarm: 0 });
    const p = iso.info().pagePool;
    assert.equal(p.budgetBytes, 16 << 20);
    assert.equal(typeof p.pooledBytes, 'number');
  });
});

for (const prewarm of [0, 1]) {
  describe(`isolates through the pool, ${prewarm ? 'prepared ahead' : 'cold slot'}`, () => {
    before(() => iso.start(1, { prewarm, pagePoolMB: 16 }));
    after(() => iso.stop());

    test('the next isolate is made of the last one\'s pages, and an idle owner gives them back', async () => {
      const before = iso.info().pagePool;
      for (let i = 0; i < 4; i++) {
        const r = await run(0, 'globalThis.__teemate_result = String(Array.from({length: 1e4}, (_, i) => i).length)');
        assert.ok(!r.err, r.err && r.err.message);
        assert.equal(r.result, '10000');
      }
      await until('the last teardown', () => iso.info().pagePool.kept >= before.kept + 4 * 10);
      const p = iso.info().pagePool;
      assert.ok(p.reused - before.reused >= 3 * 10, `regions reused: ${p.reused - before.reused}`);
      assert.ok(p.pooledBytes <= p.budgetBytes);
      // kIdleTrimDelay (1 s) after the last use, hot slots too.
      await until('the idle drain', () => iso.info().pagePool.pooledBytes === 0, 5000);
    });
  });
}

// The attack: a second process reads the owner's memory (/proc/PID/mem, as the
// host can) for a secret the tenant's isolate made. The secret exists only in
// that isolate's heap (made from Math.random there, never passed to Node's
// native side), in old space; the tenant writes it reversed to a file so that
// the reader can know it without this process ever holding it. While the isolate lives, the
// reader must find it (the control); once the isolate is torn down and its
// pages sit in the pool, it must not.
const READER = `
const fs = require('fs');
const [pid, file] = process.argv.slice(1);
const secret = Buffer.from(fs.readFileSync(file, 'latin1').split('').reverse().join(''), 'latin1');
const fd = fs.openSync('/proc/' + pid + '/mem', 'r');
let found = 0;
const chunk = Buffer.alloc(8 << 20);
for (const line of fs.readFileSync('/proc/' + pid + '/maps', 'utf8').split('\\n')) {
  const m = /^([0-9a-f]+)-([0-9a-f]+) (\\S+) \\S+ \\S+ (\\d+)\\s*(.*)$/.exec(line);
  if (!m || (m[5] && !m[5].startsWith('[heap]') && !m[5].startsWith('[anon'))) continue; // anonymous memory only
  const lo = parseInt(m[1], 16), hi = parseInt(m[2], 16);
  if (hi - lo > (512 << 20)) continue; // address-space reservations
  for (let at = lo; at < hi; at += chunk.length - secret.length) {
    let n = 0;
    try { n = fs.readSync(fd, chunk, 0, Math.min(chunk.length, hi - at), at); } catch { break; }
    for (let i = chunk.subarray(0, n).indexOf(secret); i >= 0 && i < n; i = chunk.indexOf(secret, i + 1)) {
      if (i + secret.length <= n) found++;
    }
    if (n < chunk.length) break;
  }
}
process.stdout.write(String(found));
`;

describe('a torn-down tenant\'s heap, read by the host', () => {
  let dir;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tm-pagepool-'));
    iso.start(1, { prewarm: 0, pagePoolMB: 64 });
  });
  after(() => {
    iso.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const read = () => Number(execFileSync(process.execPath, ['-e', READER, String(process.pid), path.join(dir, 'ready')],
    { encoding: 'utf8', env: {} }));

  test('finds the secret while the isolate lives, and nowhere once it is gone', async () => {
    const before = iso.info().pagePool;
    const tenant = `
      const fs = require('fs');
      const abc = 'abcdefghijklmnop';
      const secret = Array.from({ length: 40 }, () => abc[Math.random() * 16 | 0]).join('');
      globalThis.keep = Array.from({ length: 300 }, (_, i) => [secret, i].join(':'));
      // Young garbage until the secret has survived enough scavenges to live
      // in old space: V8 discards its young pages itself at teardown, its old
      // ones it frees as they are, and those the pool keeps.
      for (let i = 0; i < 40; i++) new Array(1e5).fill(i);
      fs.writeFileSync(${JSON.stringify(path.join(dir, 'ready'))}, secret.split('').reverse().join(''), 'latin1');
      const t = setInterval(() => {
        if (fs.existsSync(${JSON.stringify(path.join(dir, 'go'))})) { clearInterval(t); globalThis.__teemate_result = 'done'; }
      }, 5);`;
    const done = run(0, tenant);
    await until('the tenant\'s secret', () => fs.existsSync(path.join(dir, 'ready')));
    const live = read();
    assert.ok(live >= 300, `the reader finds the live secret (control): ${live}`);
    fs.writeFileSync(path.join(dir, 'go'), '');
    const r = await done;
    assert.ok(!r.err, r.err && r.err.message);
    await until('the teardown', () => iso.info().pagePool.kept > before.kept);
    await sleep(50);
    const p = iso.info().pagePool;
    assert.ok(p.pooledBytes > 0, 'the isolate\'s pages are still mapped, in the pool');
    assert.equal(read(), 0, 'no copy of the secret is left in the owner');
  });
});
