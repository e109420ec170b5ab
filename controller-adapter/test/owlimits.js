// Drives throttling and the API surface of issue #18 (items 4 and 5) with the npm `openwhisk`
// client, plus fetch for what the client has no call for. Run by controller-adapter/internal/api's
// Go tests with OW_APIHOST, OW_AUTH (namespace guest) and OW_OTHER_AUTH (namespace other), against an invoker that echoes its
// parameters and never finishes the action "sleepy"; exits non-zero with the failing step.
'use strict'

const assert = require('node:assert/strict')
const openwhisk = require('openwhisk')

async function main () {
  const host = process.env.OW_APIHOST
  const ow = openwhisk({ apihost: host, api_key: process.env.OW_AUTH, namespace: '_', retry: false })
  const auth = 'Basic ' + Buffer.from(process.env.OW_AUTH).toString('base64')
  const step = (s) => process.stdout.write(`step: ${s}\n`)

  step('actions.create with an explicit version')
  let a = await ow.actions.create({ name: 'echo', action: { exec: { kind: 'nodejs:20', code: 'function main(p) { return p }' }, version: '3.0.0' } })
  assert.equal(a.version, '3.0.0')
  a = await ow.actions.update({ name: 'echo', action: 'function main(p) { return { p } }' })
  assert.equal(a.version, '3.0.1')

  step('count=true on every list')
  assert.deepEqual(await ow.actions.list({ count: true }), { actions: 1 })
  assert.deepEqual(await ow.packages.list({ count: true }), { packages: 0 })
  assert.deepEqual(await ow.activations.list({ count: true }), { activations: 0 })
  assert.deepEqual(await ow.triggers.list({ count: true }), { triggers: 0 })
  assert.deepEqual(await ow.rules.list({ count: true }), { rules: 0 })

  step('90 invocations in a burst: 60 accepted, 30 refused with 429')
  const outcomes = await Promise.allSettled(Array.from({ length: 90 }, (_, i) => ow.actions.invoke({ name: 'echo', params: { i } })))
  const refused = outcomes.filter((o) => o.status === 'rejected')
  assert.equal(outcomes.length - refused.length, 60)
  for (const r of refused) {
    assert.equal(r.reason.statusCode, 429)
    assert.match(r.reason.message, /Too many requests in the last minute \(count: \d+, allowed: 60\)\./)
  }
  const counts = refused.map((r) => Number(/count: (\d+)/.exec(r.reason.message)[1])).sort((x, y) => x - y)
  assert.deepEqual(counts, Array.from({ length: 30 }, (_, i) => 61 + i))

  step('40 invocations of a slow action: 30 in flight, 10 refused with 429 (namespace other)')
  const other = openwhisk({ apihost: host, api_key: process.env.OW_OTHER_AUTH, namespace: '_', retry: false })
  await other.actions.create({ name: 'sleepy', action: 'function main() { return new Promise(() => {}) }' })
  let inFlight = 0
  for (let i = 0; i < 40; i++) {
    try {
      await other.actions.invoke({ name: 'sleepy' })
      inFlight++
    } catch (e) {
      assert.equal(e.statusCode, 429)
      assert.match(e.message, /Too many concurrent requests in flight \(count: 30, allowed: 30\)\./)
    }
  }
  assert.equal(inFlight, 30)

  step('namespace limits')
  const limits = await (await fetch(`${host}/api/v1/namespaces/_/limits`, { headers: { Authorization: auth } })).json()
  assert.equal(limits.invocationsPerMinute, 60)
  assert.equal(limits.concurrentInvocations, 30)
  assert.equal(limits.firesPerMinute, 60)

  step('GET /')
  const info = await (await fetch(`${host}/`)).json()
  assert.deepEqual(Object.keys(info).sort(), ['api_paths', 'description', 'limits', 'runtimes', 'support'])
  assert.equal(info.limits.actions_per_minute, 60)
  assert.ok(info.runtimes.nodejs.some((r) => r.kind === 'nodejs:20' && r.default))

  step('api-docs')
  const v1 = await (await fetch(`${host}/api/v1`)).json()
  const doc = await (await fetch(host + v1.swagger_paths['api-docs'])).json()
  assert.equal(doc.openapi, '3.0.3')
  assert.ok(doc.paths['/api/v1/namespaces/{namespace}/actions/{name}'].post)

  step('CORS preflight without a key')
  const pre = await fetch(`${host}/api/v1/namespaces/_/actions/echo`, { method: 'OPTIONS', headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST' } })
  assert.equal(pre.status, 200)
  assert.equal(pre.headers.get('access-control-allow-origin'), '*')
  assert.match(pre.headers.get('access-control-allow-headers'), /Authorization/)

  step('/metrics')
  const metrics = await (await fetch(`${host}/metrics`)).text()
  assert.match(metrics, /teemate_controller_throttled_total\{limit="invocationsPerMinute"\} 30/)
  assert.match(metrics, /teemate_controller_throttled_total\{limit="concurrentInvocations"\} 10/)
  assert.match(metrics, /teemate_controller_activations_published_total\{blocking="false"\} 90/)

  process.stdout.write('ok\n')
}

main().catch((e) => {
  process.stderr.write(`failed: ${e.stack || e}\n`)
  process.exit(1)
})
