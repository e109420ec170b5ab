'use strict';
// The enclave's half of the interop test (interop_test.go): a real image key
// (trusted/keys.js) and trusted/sealed.js, driven by the Go test over stdin/stdout,
// one JSON object per line. The first line out is the evidence as the enclave serves it.
//   {"op":"run","value":…,"env":{…},"outcome":…,"result":…,"logs":[…],"code":"…"}
//     → the `result` message the host would get, or {"refused": message}
//   {"op":"code","code":"…","env":{…}} → {"code": plaintext} or {"refused": message}
const path = require('path');
const readline = require('readline');

const trusted = path.join(__dirname, '..', '..', '..', 'enclave-runtime', 'trusted');
const sealed = require(path.join(trusted, 'sealed.js'));
const { ImageKeys } = require(path.join(trusted, 'keys.js'));

const keys = new ImageKeys({ image: 'nodejs:20', attestationDir: '' });
keys.start('generate');
const replay = new sealed.ReplayCache();
process.stdout.write(`${JSON.stringify(keys.evidence())}\n`);

function handle(req) {
  if (req.op === 'code') return { code: sealed.openCode(keys, req.code, req.env) };
  if (req.op !== 'run') throw new Error(`unknown op ${req.op}`);
  const { params, ctx } = sealed.openEnvelope(keys, req.value, req.env, replay);
  const msg = { type: 'result', outcome: req.outcome, result: req.result === undefined ? params : req.result,
    logs: (req.logs || []).map((line) => ({ stream: 'stdout', time: '2026-12-06T00:00:00.000Z', line })),
    timings: { isolateMs: 0, runMs: 0, teardownMs: 0 } };
  return sealed.sealOutcome(keys, ctx, msg, sealed.sha256hex(req.code || ''));
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let out;
  try {
    out = handle(JSON.parse(line));
  } catch (e) {
    if (!(e instanceof sealed.SealedError)) throw e;
    out = { refused: e.message };
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
});
