'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const zip = require('../trusted/zip');
const { zipStored } = require('./gate-client');
const need = require('./need');

function tmp() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'teemate-zip-test-'));
}

test('stored and deflated entries extract with their directories', async () => {
  const dir = tmp();
  try {
    const buf = zipStored([
      { name: 'pkg/' },
      { name: 'pkg/a.txt', data: 'stored' },
      { name: 'pkg/deep/b.txt', data: 'deflated '.repeat(1000), deflate: true },
    ]);
    const r = await zip.extract(buf, path.join(dir, 'out'));
    assert.deepEqual(r, { files: 2, bytes: 6 + 9000 });
    assert.equal(fs.readFileSync(path.join(dir, 'out/pkg/a.txt'), 'utf8'), 'stored');
    assert.equal(fs.readFileSync(path.join(dir, 'out/pkg/deep/b.txt'), 'utf8'), 'deflated '.repeat(1000));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the zip binary output is read when zip is installed', async (t) => {
  const { execFileSync } = require('child_process');
  let have = true;
  try { execFileSync('zip', ['-v'], { stdio: 'ignore' }); } catch { have = false; }
  if (!have) { need.missing(t, 'zip is not installed (make deps)'); return; }
  const dir = tmp();
  try {
    fs.mkdirSync(path.join(dir, 'src/sub'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'src/index.js'), 'exports.main = () => ({});\n'.repeat(50));
    fs.writeFileSync(path.join(dir, 'src/sub/x.json'), '{"a":1}');
    execFileSync('zip', ['-qr', path.join(dir, 'a.zip'), '.'], { cwd: path.join(dir, 'src') });
    await zip.extract(fs.readFileSync(path.join(dir, 'a.zip')), path.join(dir, 'out'));
    assert.equal(fs.readFileSync(path.join(dir, 'out/sub/x.json'), 'utf8'), '{"a":1}');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('hostile archives are refused', async (t) => {
  const cases = [
    { name: 'parent traversal', files: [{ name: '../evil.js', data: 'x' }], re: /escapes the action directory/ },
    { name: 'nested traversal', files: [{ name: 'a/../../evil.js', data: 'x' }], re: /escapes/ },
    { name: 'absolute path', files: [{ name: '/etc/evil', data: 'x' }], re: /absolute path/ },
    { name: 'drive path', files: [{ name: 'C:/evil', data: 'x' }], re: /absolute path/ },
    { name: 'backslash', files: [{ name: '..\\evil', data: 'x' }], re: /backslash/ },
    { name: 'symlink', files: [{ name: 'link', data: '/etc/passwd', mode: 0o120777 }], re: /symbolic link/ },
    { name: 'device', files: [{ name: 'dev', data: '', mode: 0o020644 }], re: /not a regular file/ },
    { name: 'duplicate', files: [{ name: 'a', data: '1' }, { name: 'a', data: '2' }], re: /appears twice/ },
    { name: 'forged size', files: [{ name: 'a', data: 'x'.repeat(100), deflate: true, usize: 10 }], re: /inflate|declared/ },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      const dir = tmp();
      try {
        await assert.rejects(zip.extract(zipStored(c.files), path.join(dir, 'out')), (e) => {
          assert.ok(e instanceof zip.ZipError, e.stack);
          assert.match(e.message, c.re);
          return true;
        });
        assert.equal(fs.existsSync(path.join(dir, 'evil.js')), false);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

test('size and entry limits stop zip bombs before inflating', () => {
  const bomb = zipStored([{ name: 'a', data: Buffer.alloc(1 << 20), deflate: true }]);
  assert.ok(bomb.length < 5000, 'a megabyte of zeros deflates to a few KiB');
  assert.throws(() => zip.list(bomb, { maxTotalBytes: 1 << 19 }), /expands to more than the limit of 524288 bytes/);
  const many = zipStored(Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, data: 'x' })));
  assert.throws(() => zip.list(many, { maxEntries: 10 }), /20 entries, more than the limit of 10/);
  assert.equal(zip.list(many).length, 20);
});

test('garbage is not a zip', () => {
  assert.throws(() => zip.list(Buffer.from('hello world, this is not a zip file')), /not a zip file/);
  assert.throws(() => zip.list(Buffer.alloc(3)), /not a zip file/);
  const good = zipStored([{ name: 'a', data: 'x' }]);
  assert.throws(() => zip.list(good.subarray(10)), /corrupt|not a zip/);
});
