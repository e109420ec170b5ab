// Drives the controller-adapter's REST API with the npm `openwhisk` client
// (the library OpenWhisk users call from Node), to check that the client
// parses every reply. Run by controller-adapter/internal/api's Go tests with
// OW_APIHOST (http://host:port) and OW_AUTH (uuid:key) set; exits non-zero
// with the failing step on stderr.
'use strict'

const assert = require('node:assert/strict')
const openwhisk = require('openwhisk')

async function main () {
  const ow = openwhisk({ apihost: process.env.OW_APIHOST, api_key: process.env.OW_AUTH, namespace: '_', retry: false })
  const name = 'jsclient'
  const step = (s) => process.stdout.write(`step: ${s}\n`)

  step('namespaces.list')
  assert.deepEqual(await ow.namespaces.list(), ['guest'])

  step('actions.create')
  const created = await ow.actions.create({
    name,
    action: 'function main(p) { return p }',
    kind: 'nodejs:20',
    params: { greeting: 'hello' }
  })
  assert.equal(created.name, name)
  assert.equal(created.exec.kind, 'nodejs:20')
  assert.ok(created.annotations.some((a) => a.key === 'exec' && a.value === 'nodejs:20'))

  step('actions.create conflict')
  await assert.rejects(ow.actions.create({ name, action: 'x' }), (e) => e.statusCode === 409)

  step('actions.update')
  const updated = await ow.actions.update({ name, limits: { memory: 128 } })
  assert.equal(updated.version, '0.0.2')
  assert.equal(updated.limits.memory, 128)

  step('actions.invoke blocking result')
  const result = await ow.actions.invoke({ name, params: { who: 'js' }, blocking: true, result: true })
  assert.equal(result.who, 'js')
  assert.equal(result.greeting, 'hello')

  step('actions.invoke blocking')
  const act = await ow.actions.invoke({ name, params: {}, blocking: true })
  assert.match(act.activationId, /^[0-9a-f]{32}$/)
  assert.equal(act.response.success, true)

  step('actions.invoke non-blocking')
  const nb = await ow.actions.invoke({ name, params: {} })
  assert.match(nb.activationId, /^[0-9a-f]{32}$/)

  step('actions.get / list')
  const got = await ow.actions.get({ name })
  assert.equal(got.exec.code, 'function main(p) { return p }')
  const list = await ow.actions.list()
  assert.ok(list.some((a) => a.name === name))

  step('activations')
  const full = await ow.activations.get({ name: act.activationId })
  assert.equal(full.name, name)
  const logs = await ow.activations.logs({ name: act.activationId })
  assert.ok(Array.isArray(logs.logs) && logs.logs.length === 1)
  const res = await ow.activations.result({ name: act.activationId })
  assert.equal(res.success, true)
  assert.equal(res.status, 'success')
  const acts = await ow.activations.list({ name, limit: 10 })
  assert.equal(acts.length, 3)

  step('actions.delete')
  await ow.actions.delete({ name })
  await assert.rejects(ow.actions.get({ name }), (e) => e.statusCode === 404)

  step('bad key')
  const bad = openwhisk({ apihost: process.env.OW_APIHOST, api_key: 'nobody:nokey', namespace: '_', retry: false })
  await assert.rejects(bad.actions.list(), (e) => e.statusCode === 401)

  process.stdout.write('ok\n')
}

main().catch((err) => {
  process.stderr.write(`owclient failed: ${err && err.stack ? err.stack : err}\n`)
  process.exit(1)
})
