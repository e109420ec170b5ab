'use strict';
// Gate authentication (trusted side): who may attach to this owner and run an
// activation. The invoker gives the owner a random key at start (on its standard
// input, never in its arguments or environment) and gives each activation's
// sandbox, and nothing else, a token for that activation:
//
//   token = hex(HMAC-SHA256(key, "teemate-gate-v1\n" + activation + "\n" + namespace))
//
// The sandbox's shim presents it in `hello`; the owner checks it here in
// constant time, lets it take one TCS slot once, and refuses anything else with
// error class `auth`, counting each refusal (`authRefused` in `pong`). The run's
// __OW_ACTIVATION_ID and __OW_NAMESPACE must then be the ones the token names.
//
// Without a key (the strawman model's per-sandbox runtime, the tests of other
// parts) no token is asked for, and the startup log says so.

const crypto = require('crypto');

const DOMAIN = 'teemate-gate-v1\n';
const KEY_BYTES = 32;
// Spent tokens remembered against replay. A token is a secret of one sandbox,
// which is destroyed after its one activation; the bound keeps the owner's memory
// fixed (a few MiB at most) at the price that a token spent more than this many
// activations ago is no longer recognised as spent (PROTOCOL.md, "Authentication").
const MAX_SPENT = 65536;
// The longest activation id and namespace accepted (OpenWhisk's are far shorter).
const MAX_NAME = 256;

// AuthError is a refusal: error class `auth`, connection closed.
class AuthError extends Error {
  constructor(message) {
    super(message);
    this.cls = 'auth';
  }
}

// parseKey reads the key the invoker wrote: 64 hex digits (32 bytes), an
// optional trailing newline.
function parseKey(text) {
  const s = String(text).replace(/\n$/, '');
  if (!/^[0-9a-f]{64}$/.test(s)) throw new Error(`the gate key must be ${KEY_BYTES * 2} lowercase hex digits`);
  return Buffer.from(s, 'hex');
}

// token computes the token of (activation, namespace) under key, as the invoker
// does (invoker/internal/gate/token.go).
function token(key, activation, namespace) {
  return crypto.createHmac('sha256', key).update(`${DOMAIN}${activation}\n${namespace}`).digest('hex');
}

class GateAuth {
  // key: a 32-byte Buffer, or null for no authentication.
  constructor(key) {
    if (key !== null && !(Buffer.isBuffer(key) && key.length === KEY_BYTES)) {
      throw new Error(`the gate key must be ${KEY_BYTES} bytes`);
    }
    this.key = key;
    this.spent = new Set(); // insertion-ordered: the oldest is evicted first
    this.refused = 0;
  }

  get required() { return this.key !== null; }

  // refuse counts a refusal and returns the error to throw.
  refuse(message) {
    this.refused++;
    return new AuthError(message);
  }

  // hello checks the credentials of a hello and returns the ticket the connection
  // keeps ({activation, namespace, id}), or null when no key was given. Throws
  // AuthError (counted) when they do not hold.
  hello(m) {
    if (!this.required) return null;
    const { activation, namespace } = m;
    if (m.token === undefined) throw this.refuse('this runtime requires a gate token in hello');
    if (typeof m.token !== 'string' || !/^[0-9a-f]{64}$/.test(m.token)) {
      throw this.refuse('hello.token must be 64 lowercase hex digits');
    }
    for (const [k, v] of [['activation', activation], ['namespace', namespace]]) {
      // No newline: it separates the two in the token's input.
      if (typeof v !== 'string' || v === '' || v.length > MAX_NAME || v.includes('\n')) {
        throw this.refuse(`hello.${k} must be a non-empty string of at most ${MAX_NAME} characters, without newlines`);
      }
    }
    const want = Buffer.from(token(this.key, activation, namespace), 'hex');
    if (!crypto.timingSafeEqual(want, Buffer.from(m.token, 'hex'))) {
      throw this.refuse('the gate token is not valid for this activation');
    }
    // The token names (activation, namespace) under this key, at a fixed size.
    const id = m.token;
    if (this.spent.has(id)) throw this.refuse('the gate token was already used');
    return { activation, namespace, id };
  }

  // spend marks the ticket used as it takes a TCS slot; a second use is refused
  // (counted). Spending at the slot rather than at hello lets the invoker retry an
  // activation whose sandbox was refused a slot (busy) with a fresh sandbox.
  spend(ticket) {
    if (ticket === null) return;
    if (this.spent.has(ticket.id)) throw this.refuse('the gate token was already used');
    this.spent.add(ticket.id);
    if (this.spent.size > MAX_SPENT) this.spent.delete(this.spent.values().next().value);
  }

  // run checks that the run's effective environment names the activation the
  // ticket was issued for.
  run(ticket, env) {
    if (ticket === null) return;
    if (env.__OW_ACTIVATION_ID !== ticket.activation || env.__OW_NAMESPACE !== ticket.namespace) {
      throw this.refuse('the run is for another activation than the gate token');
    }
  }
}

module.exports = { GateAuth, AuthError, parseKey, token, MAX_SPENT };
