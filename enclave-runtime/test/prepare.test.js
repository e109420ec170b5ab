'use strict';
// Unit tests of action preparation at init: the in-memory memory of extracted
// zipped actions (ZipActions) and its bounds.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { ZipActions, InitError } = require('../trusted/prepare');
const { zipStored } = require('./gate-client');

function archive(body) {
  return zipStored([{ name: 'index.js', data: `exports.main = () => (${JSON.stringify(body)});` }]).toString('base64');
}

test('ZipActions: a repeated init is answered from memory, without the file system', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'teemate-prepare-test-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const zips = new ZipActions(dir);
  const code = archive({ a: 1 });
  const first = await zips.prepare({ main: 'main', code });
  assert.equal(first.kind, 'dir');
  assert.ok(fs.existsSync(path.join(first.dir, 'index.js')));
  // Remove the completion marker: a file system check would now re-extract into a
  // new temp dir and rename it; the memory answers with the same descriptor.
  fs.rmSync(path.join(first.dir, '.teemate-complete'));
  const second = await zips.prepare({ main: 'main', code });
  assert.equal(second, first);
  assert.ok(!fs.existsSync(path.join(first.dir, '.teemate-complete')), 'nothing was extracted again');
  // Another owner (fresh memory) goes to the file system and finds the same directory.
  const third = await new ZipActions(dir).prepare({ main: 'main', code });
  assert.notEqual(third, first);
  assert.equal(third.dir, first.dir);
  // A bad entry point name is refused before the memory is consulted.
  await assert.rejects(zips.prepare({ main: 'a-b', code }), (e) => e instanceof InitError && /not a valid name/.test(e.message));
});

test('ZipActions: bounded, least recently used forgotten first; failures are not remembered', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'teemate-prepare-test-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const zips = new ZipActions(dir, { maxEntries: 2 });
  const [a, b, c] = [archive({ a: 1 }), archive({ b: 1 }), archive({ c: 1 })];
  await zips.prepare({ main: 'main', code: a });
  await zips.prepare({ main: 'main', code: b });
  await zips.prepare({ main: 'main', code: a }); // a is now the most recent
  await zips.prepare({ main: 'main', code: c }); // forgets b
  assert.equal(zips.known.size, 2);
  const keys = [...zips.known.values()].map((d) => d.dir);
  assert.equal(keys.length, 2);
  assert.ok(!keys.includes((await new ZipActions(dir).prepare({ main: 'main', code: b })).dir), 'b was forgotten');

  const noEntry = zipStored([{ name: 'lib.js', data: 'exports.x = 1;' }]).toString('base64');
  for (let i = 0; i < 2; i++) {
    await assert.rejects(zips.prepare({ main: 'main', code: noEntry }),
      (e) => e instanceof InitError && /must contain either package.json or index.js/.test(e.message));
  }
  assert.equal(zips.known.size, 2, 'a failed init is not remembered');

  // The kept keys are bounded by their total size too.
  const small = new ZipActions(dir, { maxBytes: a.length + b.length });
  for (const code of [a, b, c]) await small.prepare({ main: 'main', code });
  assert.equal(small.known.size, 2);
  assert.ok(small.bytes <= a.length + b.length);
  assert.ok(!small.known.has(a), 'the oldest went first');
});
