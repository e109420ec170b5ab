// A sealed invocation through the npm `openwhisk` client with TeeMate's JS client module
// (controller-adapter/client/js/teemate.js), as a Node program would make it. Run by
// sealed_test.go with OW_APIHOST, OW_AUTH, OW_ACTION (a name in the key's namespace) and
// OW_PARAMS (JSON) set; prints {"activationId", "result", "logs", "receipt"} as JSON.
'use strict'

const path = require('node:path')
const openwhisk = require('openwhisk')
const teemate = require(path.join(__dirname, '..', 'client', 'js', 'teemate.js'))

async function main () {
  const apihost = process.env.OW_APIHOST
  const auth = process.env.OW_AUTH
  const name = process.env.OW_ACTION
  const ow = openwhisk({ apihost, api_key: auth, namespace: '_', retry: false })
  const [namespace] = await ow.namespaces.list()
  const action = `/${namespace}/${name}`
  const resp = await fetch(`${apihost}/api/v1/teemate/evidence?action=${encodeURIComponent(action)}`, {
    headers: { authorization: 'Basic ' + Buffer.from(auth).toString('base64') }
  })
  if (!resp.ok) throw new Error(`evidence: HTTP ${resp.status}: ${await resp.text()}`)
  const evidence = await resp.text() // as served: its SHA-256 is what the receipt names
  teemate.verifyEvidence(evidence, { allowSimulated: true })
  const { params, reply } = teemate.sealParams(evidence, namespace, action, JSON.parse(process.env.OW_PARAMS))
  const act = await ow.actions.invoke({ name, params, blocking: true })
  const out = teemate.openResult(reply, act.activationId, act.response.result)
  process.stdout.write(JSON.stringify({ activationId: act.activationId, ...out }) + '\n')
}

main().catch((e) => {
  process.stderr.write(`sealedclient.js: ${e.stack || e}\n`)
  process.exit(1)
})
