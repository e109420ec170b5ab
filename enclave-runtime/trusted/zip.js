'use strict';
// A small zip reader for binary (zipped) actions (trusted side).
//
// The archive comes from the host, so it is hostile until proven otherwise: entry
// names may try to escape the target directory, entries may be symlinks, and sizes
// may be forged to make inflation blow up memory or disk. We read the central
// directory ourselves (no unzip binary, no npm module: the enclave stays small and
// measured), support the two methods real tools write (stored, deflate), and refuse
// everything else with a clear message.

const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const { promisify } = require('util');

const inflateRaw = promisify(zlib.inflateRaw);

const DEFAULT_MAX_TOTAL_BYTES = 256 * 1024 * 1024;
const DEFAULT_MAX_ENTRIES = 50000;

const SIG_EOCD = 0x06054b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

class ZipError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ZipError';
  }
}

function findEocd(buf) {
  // The end-of-central-directory record is 22 bytes plus a comment of up to 64 KiB.
  const lowest = Math.max(0, buf.length - 22 - 0xffff);
  for (let i = buf.length - 22; i >= lowest; i--) {
    if (buf.readUInt32LE(i) === SIG_EOCD) return i;
  }
  return -1;
}

// safeName checks an entry name and returns it normalised to forward slashes, or
// throws. A name is accepted only if it stays below the extraction root.
function safeName(raw) {
  if (raw.length === 0) throw new ZipError('archive has an entry with an empty name');
  if (raw.includes('\0')) throw new ZipError('archive entry name contains a NUL byte');
  if (raw.includes('\\')) throw new ZipError(`archive entry "${raw}" uses a backslash in its path`);
  if (raw.startsWith('/') || /^[A-Za-z]:/.test(raw)) {
    throw new ZipError(`archive entry "${raw}" has an absolute path`);
  }
  const parts = raw.split('/');
  for (const p of parts) {
    if (p === '..') throw new ZipError(`archive entry "${raw}" escapes the action directory`);
  }
  return parts.filter((p) => p !== '' && p !== '.').join('/');
}

// list parses the central directory and returns entry descriptors without inflating
// anything, enforcing the entry-count and declared-size limits up front.
function list(buf, { maxEntries = DEFAULT_MAX_ENTRIES, maxTotalBytes = DEFAULT_MAX_TOTAL_BYTES } = {}) {
  if (!Buffer.isBuffer(buf) || buf.length < 22) throw new ZipError('the action archive is not a zip file');
  const eocd = findEocd(buf);
  if (eocd < 0) throw new ZipError('the action archive is not a zip file (no end of central directory)');
  const disk = buf.readUInt16LE(eocd + 4);
  const count = buf.readUInt16LE(eocd + 10);
  const cdSize = buf.readUInt32LE(eocd + 12);
  const cdOffset = buf.readUInt32LE(eocd + 16);
  if (disk !== 0) throw new ZipError('multi-part zip archives are not supported');
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    throw new ZipError('zip64 archives are not supported');
  }
  if (count > maxEntries) {
    throw new ZipError(`the action archive has ${count} entries, more than the limit of ${maxEntries}`);
  }
  if (cdOffset + cdSize > eocd) throw new ZipError('the action archive is corrupt (central directory out of range)');

  const entries = [];
  let total = 0;
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > eocd || buf.readUInt32LE(p) !== SIG_CENTRAL) {
      throw new ZipError('the action archive is corrupt (bad central directory entry)');
    }
    const madeBy = buf.readUInt16LE(p + 4);
    const flags = buf.readUInt16LE(p + 8);
    const method = buf.readUInt16LE(p + 10);
    const crc = buf.readUInt32LE(p + 16);
    const csize = buf.readUInt32LE(p + 20);
    const usize = buf.readUInt32LE(p + 24);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    const extAttr = buf.readUInt32LE(p + 38);
    const localOffset = buf.readUInt32LE(p + 42);
    if (p + 46 + nameLen > eocd) throw new ZipError('the action archive is corrupt (name out of range)');
    const rawName = buf.toString('utf8', p + 46, p + 46 + nameLen);
    p += 46 + nameLen + extraLen + commentLen;

    const name = safeName(rawName);
    if (flags & 1) throw new ZipError(`archive entry "${rawName}" is encrypted`);
    const unixMode = (madeBy >> 8) === 3 ? (extAttr >>> 16) : 0;
    if ((unixMode & S_IFMT) === S_IFLNK) throw new ZipError(`archive entry "${rawName}" is a symbolic link`);
    if (unixMode & S_IFMT && (unixMode & S_IFMT) !== S_IFDIR && (unixMode & S_IFMT) !== S_IFREG) {
      throw new ZipError(`archive entry "${rawName}" is not a regular file or directory`);
    }
    const isDir = rawName.endsWith('/') || (unixMode & S_IFMT) === S_IFDIR;
    if (!isDir && method !== 0 && method !== 8) {
      throw new ZipError(`archive entry "${rawName}" uses unsupported compression method ${method}`);
    }
    if (csize === 0xffffffff || usize === 0xffffffff || localOffset === 0xffffffff) {
      throw new ZipError('zip64 archives are not supported');
    }
    total += usize;
    if (total > maxTotalBytes) {
      throw new ZipError(`the action archive expands to more than the limit of ${maxTotalBytes} bytes`);
    }
    if (name === '') continue; // "./" style root entry
    entries.push({ name, rawName, isDir, method, crc, csize, usize, localOffset });
  }
  return entries;
}

async function entryData(buf, e) {
  const lo = e.localOffset;
  if (lo + 30 > buf.length || buf.readUInt32LE(lo) !== SIG_LOCAL) {
    throw new ZipError(`archive entry "${e.rawName}" has a bad local header`);
  }
  const start = lo + 30 + buf.readUInt16LE(lo + 26) + buf.readUInt16LE(lo + 28);
  const end = start + e.csize;
  if (end > buf.length) throw new ZipError(`archive entry "${e.rawName}" runs past the end of the archive`);
  const raw = buf.subarray(start, end);
  let data;
  if (e.method === 0) {
    data = raw;
  } else {
    try {
      // maxOutputLength bounds inflation by the declared size, so a forged size
      // cannot turn a small entry into an unbounded allocation.
      // Inflation runs on libuv's thread pool so a large archive does not stall the
      // gate for everyone else.
      data = await inflateRaw(raw, { maxOutputLength: Math.max(1, e.usize) });
    } catch (err) {
      throw new ZipError(`archive entry "${e.rawName}" does not inflate to its declared size: ${err.message}`);
    }
  }
  if (data.length !== e.usize) {
    throw new ZipError(`archive entry "${e.rawName}" has ${data.length} bytes, ${e.usize} declared`);
  }
  if (typeof zlib.crc32 === 'function' && (zlib.crc32(data) >>> 0) !== e.crc) {
    throw new ZipError(`archive entry "${e.rawName}" fails its CRC check`);
  }
  return data;
}

// extract writes every entry of buf below dir (which must not exist yet or be empty).
// Resolves to {files, bytes}.
async function extract(buf, dir, opts = {}) {
  const entries = list(buf, opts);
  const root = path.resolve(dir);
  fs.mkdirSync(root, { recursive: true });
  let bytes = 0;
  let files = 0;
  for (const e of entries) {
    const target = path.resolve(root, e.name);
    // Belt and braces: safeName already refused "..", this refuses anything else
    // path.resolve might turn into an escape.
    if (target !== root && !target.startsWith(root + path.sep)) {
      throw new ZipError(`archive entry "${e.rawName}" escapes the action directory`);
    }
    if (e.isDir) {
      fs.mkdirSync(target, { recursive: true });
      continue;
    }
    const data = await entryData(buf, e);
    await fs.promises.mkdir(path.dirname(target), { recursive: true });
    // 'wx' never follows or overwrites an existing path (duplicate names are refused).
    try {
      await fs.promises.writeFile(target, data, { flag: 'wx', mode: 0o644 });
    } catch (err) {
      if (err.code === 'EEXIST') throw new ZipError(`archive entry "${e.rawName}" appears twice`);
      throw err;
    }
    bytes += data.length;
    files += 1;
  }
  return { files, bytes };
}

module.exports = { list, extract, safeName, ZipError, DEFAULT_MAX_TOTAL_BYTES, DEFAULT_MAX_ENTRIES };
