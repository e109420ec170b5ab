'use strict';
// The JS client module (../js/teemate.js) driven by js_test.go: one JSON request on
// stdin, one JSON answer on stdout.
//   {"op":"seal","evidence":"<text>","namespace":…,"action":…,"params":{…}} -> {"params":…,"reply":…}
//   {"op":"open","reply":{…},"activationId":…,"result":{…}}               -> {"result":…,"error":…,"logs":[…]} or {"failed":code,"message":…}
const path = require('node:path');
const teemate = require(path.join(__dirname, '..', 'js', 'teemate.js'));

let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  const req = JSON.parse(input);
  let out;
  try {
    if (req.op === 'seal') {
      teemate.verifyEvidence(req.evidence, { allowSimulated: true });
      out = teemate.sealParams(req.evidence, req.namespace, req.action, req.params);
    } else {
      const o = teemate.openResult(req.reply, req.activationId, req.result);
      out = { result: o.result, error: o.error, logs: o.logs };
    }
  } catch (e) {
    out = { failed: e.code || 'exception', message: e.message };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
});
