'use strict';
// Gate authentication: an owner started with a key (--gate-key stdin) lets a caller
// attach only with the token of one activation, once; everything else is refused
// with class `auth` and counted in `pong`. Without a key nothing changes.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const { GateAuth, parseKey, token, MAX_SPENT } = require('../trusted/gateauth');
const { startOwner, frame } = require('./gate-client');

const CODE = 'function main(p) { return { id: process.env.__OW_ACTIVATION_ID, ns: process.env.__OW_NAMESPACE }; }';

// The vector invoker/internal/gate/token_test.go checks too: both sides must agree.
test('token: the invoker\'s and the owner\'s computation agree', () => {
  const key = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
  assert.equal(token(key, '0123456789abcdef0123456789abcdef', 'guest'),
    'ea91b3d8a7720ac71820876394ef384a6fc8359c493f5e7e9a785bd3e727ae7e');
});

test('parseKey', () => {
  const hex = 'ab'.repeat(32);
  assert.deepEqual(parseKey(`${hex}\n`), Buffer.from(hex, 'hex'));
  for (const bad of ['', 'ab'.repeat(31), 'AB'.repeat(32), `${'ab'.repeat(32)}00`, `${'zz'.repeat(32)}`]) {
    assert.throws(() => parseKey(bad), /the gate key must be 64 lowercase hex digits/);
  }
});

test('GateAuth: the spent set is bounded and forgets the oldest first', () => {
  const a = new GateAuth(crypto.randomBytes(32));
  const ticket = (i) => a.hello({ activation: `a${i}`, namespace: 'ns', token: token(a.key, `a${i}`, 'ns') });
  const first = ticket(0);
  a.spend(first);
  for (let i = 1; i <= MAX_SPENT; i++) a.spend(ticket(i));
  assert.equal(a.spent.size, MAX_SPENT);
  assert.equal(a.spent.has(first.id), false);
  assert.throws(() => ticket(MAX_SPENT), /already used/);
});

// attach says hello with the given fields and acquires; it returns the client and
// the replies.
async function attach(owner, fields) {
  const c = await owner.connect();
  const welcome = await c.request({ type: 'hello', version: 1, sandbox: 'test', ...fields });
  if (!welcome || welcome.type !== 'welcome') return { c, welcome };
  return { c, welcome, acquired: await c.request({ type: 'acquire' }) };
}

// runOn initialises and runs CODE on an attached client with the given run env.
async function runOn(c, env) {
  const ini = await c.request({ type: 'init', name: 'a', main: 'main', code: CODE, env: {} });
  assert.equal(ini.type, 'initialized');
  return c.request({ type: 'run', value: {}, timeoutMs: 10000, memoryMB: 128, env });
}

function creds(key, activation, namespace = 'guest') {
  return { activation, namespace, token: token(key, activation, namespace) };
}

async function pong(owner) {
  const c = await owner.connect();
  const p = await c.request({ type: 'ping' });
  c.close();
  return p;
}

function assertRefused(reply, re) {
  assert.equal(reply && reply.type, 'error', JSON.stringify(reply));
  assert.equal(reply.class, 'auth');
  assert.match(reply.message, re);
}

test('an owner with a key: only the token of the activation attaches, once', async (t) => {
  const key = crypto.randomBytes(32);
  const owner = await startOwner({ slots: 2, args: ['--gate-key', 'stdin'], stdin: `${key.toString('hex')}\n` });
  t.after(() => owner.stop());
  assert.match(owner.stderr.join(''), /"auth":"token required"/);
  let p = await pong(owner);
  assert.equal(p.auth, true);
  assert.equal(p.authRefused, 0);
  let refused = 0;

  await t.test('the right token runs its activation', async () => {
    const { c, acquired } = await attach(owner, creds(key, 'act-1'));
    assert.equal(acquired.type, 'acquired');
    const r = await runOn(c, { __OW_ACTIVATION_ID: 'act-1', __OW_NAMESPACE: 'guest' });
    assert.equal(r.outcome, 'success');
    assert.deepEqual(r.result, { id: 'act-1', ns: 'guest' });
    c.close();
  });

  await t.test('a hello without a token is refused and the connection closed', async () => {
    const { c, welcome } = await attach(owner, {});
    assertRefused(welcome, /requires a gate token/);
    await c.waitClosed();
    refused++;
  });

  const bad = [
    ['a token of another key', { ...creds(crypto.randomBytes(32), 'act-2') }, /not valid for this activation/],
    ['another activation\'s token', { ...creds(key, 'act-2'), activation: 'act-3' }, /not valid for this activation/],
    ['another namespace', { ...creds(key, 'act-2'), namespace: 'other' }, /not valid for this activation/],
    ['a malformed token', { ...creds(key, 'act-2'), token: 'x'.repeat(64) }, /64 lowercase hex digits/],
    ['an empty activation', creds(key, ''), /hello.activation must be a non-empty string/],
    ['a namespace with a newline', creds(key, 'act-2', 'a\nb'), /hello.namespace must be a non-empty string/],
    ['a replayed token', creds(key, 'act-1'), /already used/],
  ];
  for (const [name, fields, re] of bad) {
    await t.test(`${name} is refused`, async () => {
      const { c, welcome } = await attach(owner, fields);
      assertRefused(welcome, re);
      await c.waitClosed();
      refused++;
    });
  }

  await t.test('two connections with one token: the second is refused at acquire', async () => {
    const [a, b] = [await owner.connect(), await owner.connect()];
    for (const c of [a, b]) {
      const hello = { type: 'hello', version: 1, ...creds(key, 'act-4') };
      assert.equal((await c.request(hello)).type, 'welcome'); // not spent before a slot is taken
    }
    assert.equal((await a.request({ type: 'acquire' })).type, 'acquired');
    assertRefused(await b.request({ type: 'acquire' }), /already used/);
    await b.waitClosed();
    refused++;
    a.close();
  });

  await t.test('a run for another activation is refused and its slot freed', async () => {
    const { c, acquired } = await attach(owner, creds(key, 'act-5'));
    assert.equal(acquired.type, 'acquired');
    assertRefused(await runOn(c, { __OW_ACTIVATION_ID: 'act-6', __OW_NAMESPACE: 'guest' }), /another activation/);
    await c.waitClosed();
    refused++;
    const c2 = await attach(owner, creds(key, 'act-7'));
    assertRefused(await runOn(c2.c, { __OW_ACTIVATION_ID: 'act-7', __OW_NAMESPACE: 'other' }), /another activation/);
    await c2.c.waitClosed();
    refused++;
  });

  await t.test('a sandbox refused a slot (busy) may attach again with its token', async () => {
    const holders = [await attach(owner, creds(key, 'h-1')), await attach(owner, creds(key, 'h-2'))];
    const late = await attach(owner, creds(key, 'act-8'));
    assert.equal(late.acquired.type, 'error');
    assert.equal(late.acquired.class, 'busy');
    late.c.close();
    for (const h of holders) h.c.close();
    for (let i = 0; i < 50 && (await pong(owner)).free < 2; i++) await new Promise((r) => setTimeout(r, 20));
    const again = await attach(owner, creds(key, 'act-8'));
    assert.equal(again.acquired.type, 'acquired');
    assert.equal((await runOn(again.c, { __OW_ACTIVATION_ID: 'act-8', __OW_NAMESPACE: 'guest' })).outcome, 'success');
    again.c.close();
  });

  p = await pong(owner);
  assert.equal(p.authRefused, refused);
  assert.equal(p.free, 2);
  assert.match(owner.stderr.join(''), /gate caller refused/);
});

test('an owner without a key asks for no token', async (t) => {
  const owner = await startOwner({ slots: 1 });
  t.after(() => owner.stop());
  assert.match(owner.stderr.join(''), /"auth":"none: any caller may attach"/);
  const { c, acquired } = await attach(owner, {});
  assert.equal(acquired.type, 'acquired');
  assert.equal((await runOn(c, { __OW_ACTIVATION_ID: 'x', __OW_NAMESPACE: 'y' })).outcome, 'success');
  c.close();
  const p = await pong(owner);
  assert.equal(p.auth, false);
  assert.equal(p.authRefused, 0);
});

test('the owner refuses a bad gate key', async () => {
  await assert.rejects(startOwner({ args: ['--gate-key', 'stdin'], stdin: 'not a key\n' }),
    /owner exited with 2: .*bad gate key on standard input/s);
  await assert.rejects(startOwner({ args: ['--gate-key', 'env'] }), /owner exited with 2: .*--gate-key must be stdin/s);
});

// The shim sends hello and acquire in one write (PROTOCOL.md, "Attaching ahead"): the owner
// answers both in order; after a refused hello the pipelined acquire takes no slot.
test('hello and acquire pipelined: answered in order, and a refused hello takes no slot', async (t) => {
  const key = crypto.randomBytes(32);
  const owner = await startOwner({ slots: 1, args: ['--gate-key', 'stdin'], stdin: `${key.toString('hex')}\n` });
  t.after(() => owner.stop());
  const pipelined = async (fields) => {
    const c = await owner.connect();
    c.writeRaw(Buffer.concat([frame({ type: 'hello', version: 1, sandbox: 'test', ...fields }), frame({ type: 'acquire' })]));
    return { c, first: await c.next(), second: await c.next() };
  };

  const bad = await pipelined({ activation: 'a1', namespace: 'guest', token: 'ab'.repeat(32) });
  assertRefused(bad.first, /token/);
  assert.equal(bad.second, null, 'the connection closes after the refusal; acquire is not answered');
  assert.equal((await pong(owner)).free, 1, 'the refused caller holds no slot');

  const good = await pipelined(creds(key, 'a2'));
  assert.equal(good.first.type, 'welcome');
  assert.equal(good.second.type, 'acquired');
  const r = await runOn(good.c, { __OW_ACTIVATION_ID: 'a2', __OW_NAMESPACE: 'guest' });
  assert.equal(r.type, 'result', JSON.stringify(r));
  assert.deepEqual(r.result, { id: 'a2', ns: 'guest' });
  good.c.close();
});
