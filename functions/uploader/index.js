'use strict';
// uploader: the SeBS 120.uploader function as TeeMate describes it ("upload a local file to remote
// storage"), written for this project. It takes a local file (params.file) or generates `size`
// deterministic bytes, PUTs them to an S3-style object store at params.url as /<bucket>/<key>, checks the
// store's ETag (the store's SHA-256 of what it received) against its own SHA-256, and returns where the
// object went. SeBS first downloads the file from the internet; this platform has no internet, so the
// bytes come from a seeded generator that the validator replays.
//
// Params: url (http://host:port of the object store, required), bucket (required), key (required),
// size (bytes, integer in [0, 256 MiB]) or file (path of a local file), seed (generator seed, default 0).
// This is the only evaluated function that needs the network.

const http = require('node:http');
const crypto = require('node:crypto');
const fs = require('node:fs');

const MAX_SIZE = 256 << 20;
const BUCKET = /^[a-z0-9][a-z0-9.-]{0,62}$/;
const REQUEST_TIMEOUT_MS = 60000;

function now() {
  return typeof performance !== 'undefined' && performance.now ? performance.now() : Date.now();
}

// generate returns size bytes: little-endian words of a xorshift32 stream (the same seeding as the other
// functions' generators), truncated to size.
function generate(size, seed) {
  const words = new Uint32Array(Math.ceil(size / 4));
  let x = (Math.imul(seed | 0, 0x9e3779b1) ^ 0x6d2b79f5) >>> 0;
  if (x === 0) x = 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  const buf = Buffer.from(words.buffer);
  // Uint32Array uses host byte order; the defined layout is little-endian.
  if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) buf.swap32();
  return buf.subarray(0, size);
}

function objectURL(base, bucket, key) {
  const path = key.split('/').map(encodeURIComponent).join('/');
  return `${base.replace(/\/+$/, '')}/${encodeURIComponent(bucket)}/${path}`;
}

function put(url, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'PUT',
        headers: { 'Content-Length': body.length, 'Content-Type': 'application/octet-stream' },
        timeout: REQUEST_TIMEOUT_MS,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          if (text.length < 4096) text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode, etag: res.headers.etag, text }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no response within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

async function main(params) {
  params = params || {};
  const { url, bucket, key, file } = params;
  let parsed;
  try {
    parsed = new URL(url);
  } catch (e) {
    return { error: `uploader: url must be an absolute http URL, got ${JSON.stringify(url)}` };
  }
  if (parsed.protocol !== 'http:') return { error: `uploader: url must use http, got ${parsed.protocol}` };
  if (typeof bucket !== 'string' || !BUCKET.test(bucket)) {
    return { error: `uploader: bucket must match ${BUCKET}, got ${JSON.stringify(bucket)}` };
  }
  if (typeof key !== 'string' || key.length === 0 || key.length > 1024 || key.split('/').some((p) => p === '' || p === '.' || p === '..')) {
    return { error: 'uploader: key must be 1-1024 characters of non-empty path segments without "." or ".."' };
  }
  const seed = params.seed === undefined ? 0 : params.seed;
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > 4294967295) {
    return { error: `uploader: seed must be an integer in [0, 2^32), got ${JSON.stringify(params.seed)}` };
  }

  const t0 = now();
  let body;
  if (file !== undefined) {
    if (typeof file !== 'string' || file === '') return { error: 'uploader: file must be a non-empty path' };
    let st;
    try {
      st = fs.statSync(file);
    } catch (e) {
      return { error: `uploader: cannot stat file: ${e.message}` };
    }
    if (!st.isFile()) return { error: `uploader: ${file} is not a regular file` };
    if (st.size > MAX_SIZE) return { error: `uploader: file is ${st.size} bytes, more than ${MAX_SIZE}` };
    body = fs.readFileSync(file);
  } else {
    const size = params.size;
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 0 || size > MAX_SIZE) {
      return { error: `uploader: size must be an integer number of bytes in [0, ${MAX_SIZE}] (or give file), got ${JSON.stringify(size)}` };
    }
    body = generate(size, seed);
  }
  const sha256 = crypto.createHash('sha256').update(body).digest('hex');
  const t1 = now();

  const target = objectURL(parsed.href, bucket, key);
  let res;
  try {
    res = await put(target, body);
  } catch (e) {
    return { error: `uploader: PUT ${target}: ${e.message}` };
  }
  const t2 = now();
  if (res.status !== 200 && res.status !== 201) {
    return { error: `uploader: PUT ${target}: HTTP ${res.status}: ${res.text.trim()}` };
  }
  const etag = typeof res.etag === 'string' ? res.etag.replace(/"/g, '') : '';
  if (etag !== sha256) {
    return { error: `uploader: store acknowledged digest ${etag || '(none)'}, sent ${sha256}` };
  }
  return {
    bucket,
    key,
    url: target,
    size: body.length,
    sha256,
    measurement: { generate_ms: t1 - t0, upload_ms: t2 - t1, compute_ms: t2 - t0 },
  };
}

if (typeof exports === 'object' && exports !== null) exports.main = main;
