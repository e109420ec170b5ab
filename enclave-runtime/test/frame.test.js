'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Decoder, encode } = require('../trusted/frame');

function raw(len, body) {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(len, 0);
  return Buffer.concat([h, Buffer.from(body)]);
}

test('frames split across chunks and several frames in one chunk', () => {
  const d = new Decoder();
  const all = Buffer.concat([encode({ type: 'ping' }), encode({ type: 'hello', version: 1 })]);
  const got = [];
  for (let i = 0; i < all.length; i++) {
    const { messages, error } = d.push(all.subarray(i, i + 1));
    assert.equal(error, null);
    got.push(...messages);
  }
  assert.deepEqual(got, [{ type: 'ping' }, { type: 'hello', version: 1 }]);
  assert.equal(d.end(), null);
});

test('bad frames are protocol errors', async (t) => {
  const cases = [
    { name: 'zero length', bytes: raw(0, ''), re: /zero-length/ },
    { name: 'over the frame limit', bytes: raw(80000000, ''), re: /80000000 bytes exceeds the limit of 67108864/ },
    { name: 'not JSON', bytes: raw(5, 'hello'), re: /not valid JSON/ },
    { name: 'JSON array', bytes: raw(2, '[]'), re: /not a JSON object/ },
    { name: 'JSON null', bytes: raw(4, 'null'), re: /not a JSON object/ },
    { name: 'type missing', bytes: raw(2, '{}'), re: /string "type"/ },
    { name: 'type not a string', bytes: raw(10, '{"type":1}'), re: /string "type"/ },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const d = new Decoder();
      const { error } = d.push(c.bytes);
      assert.ok(error, 'an error');
      assert.equal(error.cls, 'protocol');
      assert.match(error.message, c.re);
      assert.equal(d.push(encode({ type: 'ping' })).messages.length, 0, 'a failed decoder stays failed');
    });
  }
});

test('only init may exceed the small frame limit', () => {
  const small = new Decoder({ maxSmallFrame: 64 });
  const big = { type: 'run', value: { pad: 'x'.repeat(100) } };
  assert.match(small.push(encode(big)).error.message, /run frame of \d+ bytes exceeds the limit of 64/);
  const ok = new Decoder({ maxSmallFrame: 64 });
  const r = ok.push(encode({ type: 'init', code: 'x'.repeat(100) }));
  assert.equal(r.error, null);
  assert.equal(r.messages[0].type, 'init');
});

test('a connection closing mid-frame is an error', () => {
  const d = new Decoder();
  d.push(raw(10, '{"ty'));
  assert.match(d.end().message, /middle of a frame/);
  const h = new Decoder();
  h.push(Buffer.from([0, 0]));
  assert.ok(h.end());
});
