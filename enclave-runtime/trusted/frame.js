'use strict';
// Gate framing (trusted side): 4-byte big-endian length + UTF-8 JSON object with a
// string `type`. The decoder is pure (bytes in, frames or one error out) so the
// limits of PROTOCOL.md can be tested without sockets.

const { MAX_FRAME, MAX_SMALL_FRAME } = require('./wire');

class ProtocolError extends Error {
  constructor(message, { close = true } = {}) {
    super(message);
    this.name = 'ProtocolError';
    this.cls = 'protocol';
    this.close = close;
  }
}

function encode(obj) {
  return encodeText(JSON.stringify(obj));
}

// encodeText frames a JSON text that is already encoded, written straight into the
// frame's buffer (no intermediate body buffer and copy).
function encodeText(text) {
  const n = Buffer.byteLength(text, 'utf8');
  const buf = Buffer.allocUnsafe(4 + n);
  buf.writeUInt32BE(n, 0);
  buf.write(text, 4, 'utf8');
  return buf;
}

// Decoder collects chunks and yields parsed messages. After it reports an error it
// stays failed: the connection is closed by the caller.
class Decoder {
  constructor({ maxFrame = MAX_FRAME, maxSmallFrame = MAX_SMALL_FRAME } = {}) {
    this.maxFrame = maxFrame;
    this.maxSmallFrame = maxSmallFrame;
    this.chunks = [];
    this.buffered = 0;
    this.need = -1; // body length of the frame being read, -1 while reading a header
    this.failed = null;
  }

  // push adds bytes and returns {messages, error}. error is a ProtocolError or null.
  push(chunk) {
    const messages = [];
    if (this.failed) return { messages, error: this.failed };
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.need < 0) {
        if (this.buffered < 4) break;
        const head = this._take(4);
        const n = head.readUInt32BE(0);
        if (n === 0) return this._fail(messages, 'zero-length frame');
        if (n > this.maxFrame) {
          return this._fail(messages, `frame of ${n} bytes exceeds the limit of ${this.maxFrame}`);
        }
        this.need = n;
      }
      if (this.buffered < this.need) break;
      const body = this._take(this.need);
      const n = this.need;
      this.need = -1;
      let msg;
      try {
        msg = JSON.parse(body.toString('utf8'));
      } catch (e) {
        return this._fail(messages, `frame is not valid JSON: ${e.message}`);
      }
      if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
        return this._fail(messages, 'frame is not a JSON object');
      }
      if (typeof msg.type !== 'string') {
        return this._fail(messages, 'frame lacks a string "type"');
      }
      if (msg.type !== 'init' && n > this.maxSmallFrame) {
        return this._fail(messages,
          `${msg.type} frame of ${n} bytes exceeds the limit of ${this.maxSmallFrame}`);
      }
      messages.push(msg);
    }
    return { messages, error: null };
  }

  // end reports a connection closing in the middle of a frame.
  end() {
    if (this.failed) return null;
    if (this.buffered > 0 || this.need >= 0) {
      this.failed = new ProtocolError('connection closed in the middle of a frame');
      return this.failed;
    }
    return null;
  }

  _fail(messages, text) {
    this.failed = new ProtocolError(text);
    this.chunks = [];
    this.buffered = 0;
    return { messages, error: this.failed };
  }

  _take(n) {
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}

module.exports = { Decoder, ProtocolError, encode, encodeText, MAX_FRAME, MAX_SMALL_FRAME };
