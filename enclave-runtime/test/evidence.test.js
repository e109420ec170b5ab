'use strict';
// The gate's `evidence` message: served by the owner from owner.keys (trusted/keys.js), on any
// connection and without a token, like ping; a clear `unavailable` error while the owner holds no
// image key.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { Owner } = require('../trusted/owner');
const { token } = require('../trusted/gateauth');
const { GateClient, startOwner, frame } = require('./gate-client');

const KEY = 'ab'.repeat(32);

// An owner in this process with the gate key set, so that anything but ping and evidence would
// need a token. The backend is a stand-in: these messages never reach an isolate.
async function inProcessOwner(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'teemate-ev-test-'));
  const backend = { name: 'stub', prewarm: 0, prepared: () => null, stop() {} };
  const owner = new Owner({ socket: path.join(dir, 'gate.sock'), slots: 1, image: 'nodejs:20', enclave: 'ev-0',
    mode: 'direct', workDir: path.join(dir, 'work'), scratchQuotaBytes: 1 << 20, key: Buffer.from(KEY, 'hex') }, backend);
  await owner.listen();
  t.after(async () => {
    owner.close();
    await new Promise((r) => setTimeout(r, 50)); // the scratch directories made ahead settle
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return owner;
}

// rawReply sends one frame and returns the body of the reply frame as text, byte for byte.
function rawReply(sock, msg) {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(sock, () => s.write(frame(msg)));
    let buf = Buffer.alloc(0);
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        s.destroy();
        resolve(buf.subarray(4, 4 + buf.readUInt32BE(0)).toString('utf8'));
      }
    });
    s.on('error', reject);
  });
}

test('evidence is served as keys.evidence() gives it, without a token', async (t) => {
  const owner = await inProcessOwner(t);
  const evidence = { v: 1, type: 'simulated', image: 'nodejs:20', kid: '0'.repeat(32),
    keys: { kem: 'a', sig: 'b' }, reportData: '00', simulated: { note: 'simulated: no hardware root of trust', measurement: 'm' } };
  // A stand-in of trusted/keys.js's ImageKeys (the parts the owner uses), holding a key.
  owner.keys = { ready: () => true, evidence: () => evidence, current: () => ({ kid: evidence.kid }) };
  const body = await rawReply(owner.opts.socket, { type: 'evidence' });
  // The evidence's bytes inside the reply are JSON.stringify(evidence): what evidenceSha256 hashes.
  assert.equal(body, `{"type":"evidence","evidence":${JSON.stringify(evidence)}}`);

  // Also after hello, and the connection stays usable.
  const c = await GateClient.connect(owner.opts.socket);
  t.after(() => c.socket.destroy());
  const activation = '0123456789abcdef0123456789abcdef';
  c.send({ type: 'hello', version: 1, activation, namespace: 'guest', token: token(Buffer.from(KEY, 'hex'), activation, 'guest') });
  assert.equal((await c.next()).type, 'welcome');
  assert.deepEqual(await c.request({ type: 'evidence' }), { type: 'evidence', evidence });
  assert.equal((await c.request({ type: 'ping' })).type, 'pong');
});

test('an owner without an image key answers unavailable and keeps the connection', async (t) => {
  const owner = await inProcessOwner(t);
  const c = await GateClient.connect(owner.opts.socket);
  t.after(() => c.socket.destroy());
  // No keys at all, and keys awaiting a transfer (ImageKeys.ready() false; evidence() would throw).
  const awaiting = { ready: () => false, evidence: () => { throw new Error('no key'); }, current: () => { throw new Error('no key'); } };
  for (const keys of [undefined, awaiting]) {
    owner.keys = keys;
    assert.deepEqual(await c.request({ type: 'evidence' }),
      { type: 'error', class: 'unavailable', message: 'this enclave holds no image key yet: no evidence to serve' });
  }
  assert.equal((await c.request({ type: 'ping' })).type, 'pong');
});

test('a real owner answers evidence before hello, with a gate key set', async (t) => {
  const owner = await startOwner({ slots: 1, args: ['--gate-key', 'stdin'], stdin: `${KEY}\n` });
  t.after(() => owner.stop());
  const c = await owner.connect();
  t.after(() => c.socket.destroy());
  const m = await c.request({ type: 'evidence' });
  if (m.type === 'evidence') {
    // With trusted/keys.js: the direct owner's simulated evidence of its image key.
    assert.equal(m.evidence.v, 1);
    assert.equal(m.evidence.type, 'simulated');
    assert.equal(m.evidence.image, 'nodejs:20');
    assert.match(m.evidence.kid, /^[0-9a-f]{32}$/);
    assert.match(m.evidence.simulated.note, /simulated/);
  } else {
    assert.deepEqual(m, { type: 'error', class: 'unavailable', message: 'this enclave holds no image key yet: no evidence to serve' });
  }
  assert.equal((await c.request({ type: 'ping' })).type, 'pong');
});
