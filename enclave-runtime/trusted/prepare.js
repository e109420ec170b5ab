'use strict';
// Action preparation at `init` (trusted side): no user code runs here.
//
// Plain code is wrapped as a CommonJS module function and compiled once, so syntax
// errors are reported by `init` with OpenWhisk's text. Zipped code is extracted into
// a cache directory named by the archive's sha256; ZipActions remembers in memory
// which archives are ready, so repeated inits of the same action (one per
// activation, since each sandbox is used once) cost one Map lookup and no file
// system access on the owner's thread.

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const vm = require('vm');
const zip = require('./zip');

// OpenWhisk lets `main` name a function in the action's scope; for zipped actions it
// may be a dotted path into the module's exports. It is spliced into source text, so
// only identifiers are accepted.
const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

class InitError extends Error {
  constructor(message) {
    super(message);
    this.name = 'InitError';
  }
}

function initFailed(detail) {
  return new InitError(`Initialization has failed due to: ${detail}`);
}

// wrapSource turns plain action code into a function expression taking the CommonJS
// module arguments and returning the top-level binding called `main` (or undefined
// when there is none, so the caller falls back to module.exports[main]).
function wrapSource(code, main) {
  return '(function (exports, require, module, __filename, __dirname) {' + code +
    '\n;return (function () { try { return ' + main + '; } catch (e) {' +
    ' if (e instanceof ReferenceError) return undefined; throw e; } })();\n})';
}

function checkMain(main, binary) {
  const parts = main.split('.');
  const ok = binary ? parts.every((p) => IDENT.test(p)) : IDENT.test(main);
  if (!ok) throw initFailed(`Action entrypoint '${main}' is not a valid name.`);
}

// prepareCode compiles plain code and returns the action descriptor for the bootstrap.
function prepareCode({ name, main, code }, baseDir) {
  checkMain(main, false);
  const filename = path.join(baseDir, `${name || 'action'}.js`);
  const source = wrapSource(code, main);
  try {
    // Compiles without running: a syntax error surfaces here, at init.
    new vm.Script(source, { filename }); // eslint-disable-line no-new
  } catch (e) {
    throw initFailed(String(e));
  }
  return { kind: 'code', source, filename };
}

function exists(p) {
  return fs.promises.access(p).then(() => true, () => false);
}

// refuseNativeAddons fails the init of an archive that carries a native addon
// (a .node file): it would be machine code in the process every tenant shares, so
// the capability set (caps.js) refuses to load one, and saying so at init is
// clearer than a failure of the action's first require. Nothing is extracted.
function refuseNativeAddons(buf, limits) {
  let entries;
  try {
    entries = zip.list(buf, limits);
  } catch (e) {
    if (e instanceof zip.ZipError) throw initFailed(e.message);
    throw e;
  }
  for (const e of entries) {
    if (!e.isDir && e.name.endsWith('.node')) {
      throw initFailed(`TeeMate: the native addon "${e.name}" in the action's archive cannot be loaded: ` +
        'native addons are not available to actions in a shared enclave');
    }
  }
}

// prepareZip extracts (or finds in the cache) a base64 zip and returns the descriptor.
// Its file system checks are asynchronous: the owner's thread serves every gate
// connection and must not wait for the disk.
async function prepareZip({ main, code }, cacheDir, limits) {
  checkMain(main, true);
  const buf = Buffer.from(code, 'base64');
  const sha = crypto.createHash('sha256').update(buf).digest('hex');
  const dir = path.join(cacheDir, sha);
  if (!await exists(path.join(dir, '.teemate-complete'))) {
    refuseNativeAddons(buf, limits);
    await fs.promises.mkdir(cacheDir, { recursive: true });
    const tmp = await fs.promises.mkdtemp(path.join(cacheDir, '.tmp-'));
    try {
      await zip.extract(buf, tmp, limits);
      await fs.promises.writeFile(path.join(tmp, '.teemate-complete'), sha);
      try {
        await fs.promises.rename(tmp, dir);
      } catch (e) {
        // Another init of the same archive won the race; its copy is identical.
        if (e.code !== 'ENOTEMPTY' && e.code !== 'EEXIST') throw e;
      }
    } catch (e) {
      if (e instanceof zip.ZipError) throw initFailed(e.message);
      throw e;
    } finally {
      await fs.promises.rm(tmp, { recursive: true, force: true });
    }
  }
  if (!await exists(path.join(dir, 'package.json')) && !await exists(path.join(dir, 'index.js'))) {
    throw initFailed('Zipped actions must contain either package.json or index.js at the root.');
  }
  return { kind: 'dir', dir, sha256: sha };
}

// ZipActions is the owner's memory of zipped actions that are extracted and
// checked, keyed by the base64 text exactly as it arrived. A hit costs one Map
// lookup (V8 hashes a long string by its length, then compares it with the few
// keys of that length), so it skips the base64 decode, the archive's sha256 and
// every file system check; exact equality also means there is nothing to
// collide. A miss (and a failed init, which is not remembered) takes prepareZip's
// path. The keys are kept in memory, so the memory is bounded by their total
// size and by entry count; the least recently used entries are forgotten first
// (their directories stay on disk).
class ZipActions {
  constructor(cacheDir, { maxEntries = 256, maxBytes = 32 * 1024 * 1024 } = {}) {
    this.cacheDir = cacheDir;
    this.maxEntries = maxEntries;
    this.maxBytes = maxBytes;
    this.bytes = 0;
    this.known = new Map(); // code -> descriptor; insertion order = recency
  }

  async prepare({ main, code }, limits) {
    checkMain(main, true);
    const hit = this.known.get(code);
    if (hit) {
      this.known.delete(code);
      this.known.set(code, hit);
      return hit;
    }
    const action = await prepareZip({ main, code }, this.cacheDir, limits);
    // An archive larger than the whole budget is not worth keeping a copy of.
    if (code.length <= this.maxBytes && !this.known.has(code)) {
      this.known.set(code, action);
      this.bytes += code.length;
      while (this.known.size > this.maxEntries || this.bytes > this.maxBytes) {
        const oldest = this.known.keys().next().value;
        this.known.delete(oldest);
        this.bytes -= oldest.length;
      }
    }
    return action;
  }
}

module.exports = { prepareCode, prepareZip, ZipActions, wrapSource, InitError, IDENT };
