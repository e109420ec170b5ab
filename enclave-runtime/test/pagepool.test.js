'use strict';
// --page-pool-mb through a real owner (the pool itself is tested in
// node-isolate-patch/test/pagepool.test.js): the owner hands the budget to the
// isolate addon, says at start what the pool is, and refuses a bad value.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const { startOwner, activate, ADDON } = require('./gate-client');

const noAddon = !fs.existsSync(ADDON) && 'the isolate addon is not built (make build)';

for (const [args, want] of [[[], '16 MiB'], [['--page-pool-mb', '64'], '64 MiB'], [['--page-pool-mb', '0'], 'off (off)']]) {
  test(`owner ${args.join(' ') || '(default)'}: the page pool is ${want}`, { skip: noAddon }, async (t) => {
    const owner = await startOwner({ slots: 1, isolate: 'addon', args });
    t.after(() => owner.stop());
    const line = owner.stderr.join('').split('\n').find((l) => l.includes('"gate listening"'));
    assert.ok(line, owner.stderr.join(''));
    assert.equal(JSON.parse(line).pagePool, want);
    const r = await activate(owner, { code: 'function main() { return { ok: true }; }' });
    assert.equal(r.outcome, 'success', JSON.stringify(r));
  });
}

test('--page-pool-mb is checked', async () => {
  await assert.rejects(startOwner({ args: ['--page-pool-mb', '4097'] }), /--page-pool-mb must be an integer from 0 to 4096/);
  await assert.rejects(startOwner({ args: ['--page-pool-mb', 'lots'] }), /--page-pool-mb must be an integer from 0 to 4096/);
});
