'use strict';
// Pure decisions of the owner: argument parsing, message checks, log limits and the
// mapping from what an isolate reported to the `result` message.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const { parseArgs, parsePrewarm, checkInit, checkRun, limitLogs, outcomeOf, replyFrame } = require('../trusted/owner');
const { startOwner, activate } = require('./gate-client');

test('parseArgs', async (t) => {
  const base = ['--socket', '/s', '--slots', '4', '--image', 'nodejs:20', '--enclave', 'e'];
  const ok = parseArgs(base);
  assert.deepEqual(ok, { socket: '/s', slots: 4, image: 'nodejs:20', enclave: 'e', isolate: 'auto', mode: 'direct', workDir: '', prewarm: 4,
    scratchDir: '', scratchQuotaBytes: 64 * 1024 * 1024, egressAllow: [], denyHosts: [], lockdown: 'none', keyDir: '', keyMode: 'generate',
    isolateReuse: 'none' });
  assert.equal(parseArgs([...base, '--isolate-reuse', 'tenant']).isolateReuse, 'tenant');
  assert.equal(parseArgs([...base, '--page-pool-mb', '0']).pagePoolMB, 0);
  assert.equal(parseArgs([...base, '--page-pool-mb=64']).pagePoolMB, 64);
  assert.deepEqual([parseArgs([...base, '--key-dir', '/k', '--key-mode', 'await'])].map((o) => [o.keyDir, o.keyMode])[0], ['/k', 'await']);
  const caps = parseArgs([...base, '--scratch-dir', '/sc', '--scratch-quota-mb', '8', '--egress-allow', 'api.example:443, [fd00::1]:80',
    '--deny-hosts=10.1.2.3,fd00::/8', '--lockdown', 'seccomp']);
  assert.deepEqual([caps.scratchDir, caps.scratchQuotaBytes, caps.egressAllow, caps.denyHosts, caps.lockdown],
    ['/sc', 8 * 1024 * 1024, ['api.example:443', '[fd00::1]:80'], ['10.1.2.3', 'fd00::/8'], 'seccomp']);
  assert.equal(parseArgs([...base, '--prewarm', '0']).prewarm, 0);
  assert.equal(parseArgs([...base, '--prewarm=all']).prewarm, 4);
  assert.equal(parseArgs([...base, '--isolate=worker', '--work-dir', '/w']).workDir, '/w');
  const bad = [
    { argv: base.slice(2), re: /--socket is required/ },
    { argv: [...base.slice(0, 2), '--slots', '0', ...base.slice(4)], re: /--slots must be 1..1024/ },
    { argv: [...base, '--isolate', 'vm'], re: /--isolate must be/ },
    { argv: [...base, '--mode', 'tdx'], re: /--mode must be/ },
    { argv: [...base, '--bogus', '1'], re: /unknown argument --bogus/ },
    { argv: [...base, '--key-mode', 'import'], re: /--key-mode must be generate or await/ },
    { argv: [...base, '--isolate-reuse', 'always'], re: /--isolate-reuse must be none or tenant/ },
    { argv: [...base, '--isolate', 'worker', '--isolate-reuse', 'tenant'], re: /--isolate-reuse tenant needs the isolate addon/ },
    { argv: [...base, '--image'], re: /needs a value/ },
    { argv: [...base, '--page-pool-mb', '4097'], re: /--page-pool-mb must be an integer from 0 to 4096/ },
    { argv: [...base, '--page-pool-mb', '-1'], re: /--page-pool-mb must be an integer from 0 to 4096/ },
    { argv: [...base, '--page-pool-mb', '1.5'], re: /--page-pool-mb must be an integer from 0 to 4096/ },
    { argv: [...base, '--prewarm', '5'], re: /--prewarm must be an integer from 0 to --slots \(4\) or "all", got "5"/ },
    { argv: [...base, '--prewarm'], re: /--prewarm needs a value/ },
    { argv: [...base, '--lockdown', 'apparmor'], re: /--lockdown must be none or seccomp/ },
    { argv: [...base, '--scratch-quota-mb', '0'], re: /--scratch-quota-mb must be an integer from 1 to 65536/ },
    { argv: [...base, '--egress-allow', 'api.example'], re: /--egress-allow entries must be host:port, got "api.example"/ },
    { argv: [...base, '--egress-allow', 'a:70000'], re: /--egress-allow entries must be host:port/ },
    { argv: [...base, '--deny-hosts', 'localhost'], re: /--deny-hosts entries must be IP addresses/ },
    { argv: [...base, '--deny-hosts', '10.0.0.0/33'], re: /--deny-hosts entries must be IP addresses/ },
  ];
  for (const b of bad) {
    await t.test(b.re.source, () => assert.throws(() => parseArgs(b.argv), b.re));
  }
});

test('parsePrewarm: the budget of prepared slots', async (t) => {
  const good = [[undefined, 66, 4], [undefined, 2, 2], ['0', 66, 0], ['4', 4, 4], ['all', 66, 66], ['007', 8, 7]];
  for (const [v, slots, want] of good) {
    await t.test(`${v} of ${slots}`, () => assert.equal(parsePrewarm(v, slots), want));
  }
  for (const v of ['', '-1', '1.5', '5', 'ALL', ' 1', '1e1', '0x2', 'Infinity']) {
    await t.test(`bad ${JSON.stringify(v)}`, () => assert.throws(() => parsePrewarm(v, 4), /--prewarm must be an integer from 0 to --slots \(4\) or "all"/));
  }
});

test('checkRun defaults and limits', async (t) => {
  assert.deepEqual(checkRun({ type: 'run' }), { value: {}, timeoutMs: 60000, memoryMB: 256, logLimitBytes: 10485760, env: {}, network: false });
  assert.equal(checkRun({ network: true }).network, true);
  assert.deepEqual(checkRun({ value: [1], timeoutMs: 100, memoryMB: 4096, logLimitBytes: 0 }).value, [1]);
  const bad = [
    [{ timeoutMs: 99 }, /timeoutMs/], [{ timeoutMs: 600001 }, /timeoutMs/], [{ timeoutMs: 1.5 }, /timeoutMs/],
    [{ memoryMB: 63 }, /memoryMB/], [{ memoryMB: '128' }, /memoryMB/], [{ logLimitBytes: 67108865 }, /logLimitBytes/],
    [{ network: 'yes' }, /run.network must be a boolean/], [{ network: 1 }, /run.network must be a boolean/],
    [{ value: null }, /value/], [{ value: 3 }, /value/], [{ env: { A: 1 } }, /env\["A"\]/], [{ env: 'x' }, /env must be/],
  ];
  for (const [msg, re] of bad) {
    await t.test(JSON.stringify(msg), () => assert.throws(() => checkRun(msg), (e) => e.cls === 'protocol' && re.test(e.message)));
  }
});

test('checkInit', () => {
  assert.deepEqual(checkInit({ code: 'x' }), { name: 'action', main: 'main', code: 'x', binary: false, env: {} });
  assert.throws(() => checkInit({ code: 1 }), /init.code must be a string/);
  assert.throws(() => checkInit({ code: 'x', main: 1 }), /init.main must be a string/);
  assert.throws(() => checkInit({ code: 'x', binary: 1 }), /init.binary must be a boolean/);
});

test('limitLogs re-checks what came out of the isolate', () => {
  const e = (line, stream = 'stdout') => ({ stream, time: '2026-01-01T00:00:00.000Z', line });
  assert.deepEqual(limitLogs([e('a'), e('b', 'stderr')], 100), [e('a'), e('b', 'stderr')]);
  const cut = limitLogs([e('aaaa'), e('bbbb'), e('cccc')], 10);
  assert.deepEqual(cut.map((l) => l.line), ['aaaa', 'bbbb', 'Logs were truncated because the total bytes size exceeds the limit of 10 bytes.']);
  assert.equal(cut[2].stream, 'stderr');
  assert.deepEqual(limitLogs([{ stream: 'evil', time: 't', line: 'x' }, { stream: 'stdout', line: 1 }, null], 100), []);
  assert.equal(limitLogs('not an array', 10).length, 0);
});

// What an isolate delivers: the header and the result value as two JSON texts.
const delivered = (head, result) => `${JSON.stringify(head)}\n${typeof result === 'string' ? result : JSON.stringify(result)}`;

test('outcomeOf', async (t) => {
  const run = { timeoutMs: 1234, logLimitBytes: 1000 };
  const line = { stream: 'stdout', time: '2026-01-01T00:00:00.000Z', line: 'hi' };
  const cases = [
    { name: 'success', r: { kind: 'result', text: delivered({ outcome: 'success', logs: [line] }, { a: 1 }) }, outcome: 'success', result: { a: 1 }, logs: ['hi'] },
    { name: 'array result', r: { kind: 'result', text: delivered({ outcome: 'success', logs: [] }, [1, { error: 1 }]) }, outcome: 'success', result: [1, { error: 1 }] },
    { name: 'returned dictionary with error is application', r: { kind: 'result', text: delivered({ outcome: 'success', logs: [] }, { error: 'no' }) }, outcome: 'application', result: { error: 'no' } },
    { name: 'developer stays developer', r: { kind: 'result', text: delivered({ outcome: 'developer', logs: [] }, { error: 'An error has occurred: x' }) }, outcome: 'developer', result: { error: 'An error has occurred: x' } },
    { name: 'forged outcome', r: { kind: 'result', text: delivered({ outcome: 'timeout', logs: [] }, {}) }, outcome: 'developer', malformed: true },
    { name: 'not JSON', r: { kind: 'result', text: '{' }, outcome: 'developer', malformed: true },
    { name: 'no header line', r: { kind: 'result', text: JSON.stringify({ a: 1 }) }, outcome: 'developer', malformed: true },
    { name: 'header not an object', r: { kind: 'result', text: delivered(['success'], {}) }, outcome: 'developer', malformed: true },
    { name: 'result not JSON', r: { kind: 'result', text: delivered({ outcome: 'success' }, '{"a":1} trailing') }, outcome: 'developer', malformed: true },
    { name: 'two values spliced', r: { kind: 'result', text: delivered({ outcome: 'success' }, '{"a":1},"type":"x"') }, outcome: 'developer', malformed: true },
    { name: 'non-object result', r: { kind: 'result', text: delivered({ outcome: 'success' }, 1) }, outcome: 'developer', malformed: true },
    { name: 'null result', r: { kind: 'result', text: delivered({ outcome: 'success' }, null) }, outcome: 'developer', malformed: true },
    { name: 'timeout', r: { kind: 'timeout' }, outcome: 'timeout', result: { error: 'The action exceeded its time limits of 1234 milliseconds.' } },
    { name: 'memory', r: { kind: 'memory' }, outcome: 'memory', result: { error: 'The action exhausted its memory and was aborted.' } },
    { name: 'exited', r: { kind: 'exited' }, outcome: 'developer', result: { error: 'An error has occurred: the action ended without returning a result.' } },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const m = outcomeOf(c.r, run);
      assert.equal(m.type, 'result');
      assert.equal(m.outcome, c.outcome);
      if (c.malformed) assert.deepEqual(m.result, { error: 'An error has occurred: the action produced a malformed result.' });
      if (c.result) assert.deepEqual(m.result, c.result);
      assert.ok(Array.isArray(m.logs));
      if (c.logs) assert.deepEqual(m.logs.map((l) => l.line), c.logs);
      assert.equal(typeof m.timings, 'object');
      // The reply frame decodes to exactly the message, whether the result text
      // was spliced in or the message encoded as a whole.
      const frame = replyFrame(m);
      assert.equal(frame.readUInt32BE(0), frame.length - 4);
      assert.deepEqual(JSON.parse(frame.subarray(4).toString('utf8')), JSON.parse(JSON.stringify(m)));
    });
  }
  await t.test('the result text is forwarded as the isolate serialised it', () => {
    const text = '{"b":1,"a":"\u00e9\ud83d\ude00","n":[1.5e3]}';
    const m = outcomeOf({ kind: 'result', text: delivered({ outcome: 'success', logs: [] }, text), timings: { runMs: 1 } }, run);
    const body = replyFrame(m).subarray(4).toString('utf8');
    assert.equal(body, `{"type":"result","outcome":"success","result":${text},"logs":[],"timings":{"runMs":1}}`);
    assert.deepEqual(JSON.parse(body).result, { b: 1, a: 'é😀', n: [1500] });
  });
});

test('auto falls back to worker isolates when the addon does not load', async () => {
  const owner = await startOwner({ slots: 1, isolate: 'auto', env: { TEEMATE_ISOLATE_ADDON: '/nonexistent/teemate_isolate.node' } });
  try {
    assert.equal(owner.ready.isolate, 'worker');
    const r = await activate(owner, { code: 'function main() { return { ok: 1 }; }' }, {});
    assert.deepEqual(r.result, { ok: 1 });
    // stderr is a separate pipe from the ready line: give it a moment to arrive.
    for (let i = 0; i < 100 && !/isolate addon unavailable/.test(owner.stderr.join('')); i++) {
      await new Promise((res) => setTimeout(res, 20));
    }
    assert.match(owner.stderr.join(''), /isolate addon unavailable/);
  } finally {
    await owner.stop();
  }
});

test('addon is refused loudly when asked for and missing', async () => {
  await assert.rejects(startOwner({ slots: 1, isolate: 'addon', env: { TEEMATE_ISOLATE_ADDON: '/nonexistent/x.node' } }),
    /owner exited with 1.*did not load/s);
});

test('auto picks the addon when it is built', { skip: require('./need').skip(!fs.existsSync(require('./gate-client').ADDON) && 'isolate addon not built (make build)') }, async () => {
  const owner = await startOwner({ slots: 1, isolate: 'auto' });
  try {
    assert.equal(owner.ready.isolate, 'addon');
  } finally {
    await owner.stop();
  }
});

test('--lockdown seccomp without trusted/lockdown.js is a clear start error', {
  skip: require('fs').existsSync(require('path').join(__dirname, '..', 'trusted', 'lockdown.js')) ? 'lockdown.js is present' : false,
}, async () => {
  const { startOwner } = require('./gate-client');
  await assert.rejects(startOwner({ slots: 1, isolate: 'worker', args: ['--lockdown', 'seccomp'] }), (e) => {
    assert.match(e.message, /^owner exited with 1: /);
    assert.match(e.message, /owner failed to start.*--lockdown seccomp needs trusted\/lockdown.js: Cannot find module '.\/lockdown'/s);
    return true;
  });
  // Without the flag the module is never looked for.
  const owner = await startOwner({ slots: 1, isolate: 'worker', args: ['--lockdown', 'none'] });
  await owner.stop();
});

test('scratch dirs: an empty one and one with files are both removed, and made ahead again', async () => {
  const { Scratch } = require('../trusted/owner');
  const os = require('os');
  const path = require('path');
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'teemate-scratch-test-'));
  const gone = async (dir) => {
    for (let i = 0; i < 100 && fs.existsSync(dir); i++) await new Promise((r) => setTimeout(r, 10));
    return !fs.existsSync(dir);
  };
  try {
    const s = new Scratch(parent, 1024);
    const empty = s.make();
    const full = s.make();
    fs.mkdirSync(path.join(full, 'sub'));
    fs.writeFileSync(path.join(full, 'sub', 'f'), 'x');
    s.remove(empty);
    s.remove(full);
    assert.ok(await gone(empty), 'the empty scratch dir is removed');
    assert.ok(await gone(full), 'the scratch dir with files is removed');
    for (let i = 0; i < 100 && s.ready.length < 4; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(s.ready.length, 4, 'directories are made ahead again');
    s.removeReady();
    assert.deepEqual(fs.readdirSync(parent), []);
  } finally {
    fs.rmSync(parent, { recursive: true, force: true });
  }
});
