// Drives packages, bindings and shared packages with the npm `openwhisk` client. Run by
// controller-adapter/internal/api's Go tests with OW_APIHOST, OW_AUTH (namespace guest) and
// OW_OTHER_AUTH (namespace other) set, against an invoker that echoes its parameters; exits
// non-zero with the failing step on stderr.
'use strict'

const assert = require('node:assert/strict')
const openwhisk = require('openwhisk')

async function main () {
  const client = (key) => openwhisk({ apihost: process.env.OW_APIHOST, api_key: key, namespace: '_', retry: false })
  const ow = client(process.env.OW_AUTH)
  const other = client(process.env.OW_OTHER_AUTH)
  const step = (s) => process.stdout.write(`step: ${s}\n`)

  step('packages.create')
  const created = await ow.packages.create({
    name: 'tools',
    package: { publish: true, parameters: [{ key: 'greeting', value: 'hello' }, { key: 'who', value: 'pkg' }] }
  })
  assert.equal(created.name, 'tools')
  assert.equal(created.namespace, 'guest')
  assert.deepEqual(created.binding, {})

  step('packages.create conflict')
  await assert.rejects(ow.packages.create({ name: 'tools' }), (e) => e.statusCode === 409)

  step('packages.update')
  const updated = await ow.packages.update({ name: 'tools', package: { annotations: [{ key: 'description', value: 'd' }] } })
  assert.equal(updated.version, '0.0.2')
  assert.equal(updated.parameters.length, 2)

  step('actions.create in a package')
  const act = await ow.actions.create({ name: 'tools/echo', action: 'function main(p) { return p }', params: { who: 'action' } })
  assert.equal(act.namespace, 'guest/tools')

  step('packages.get lists the actions')
  const got = await ow.packages.get({ name: 'tools' })
  assert.deepEqual(got.actions.map((a) => a.name), ['echo'])
  assert.deepEqual(got.feeds, [])

  step('packages.list')
  assert.deepEqual((await ow.packages.list()).map((p) => p.name), ['tools'])

  step('actions.invoke by package path')
  let res = await ow.actions.invoke({ name: 'tools/echo', params: { extra: 1 }, blocking: true, result: true })
  assert.deepEqual([res.greeting, res.who, res.extra], ['hello', 'action', 1])

  step('actions.list shows the package path')
  assert.ok((await ow.actions.list()).some((a) => a.namespace === 'guest/tools' && a.name === 'echo'))

  step('binding create and invoke')
  await ow.packages.create({ name: 'mine', package: { binding: { namespace: 'guest', name: 'tools' }, parameters: [{ key: 'greeting', value: 'hi' }] } })
  res = await ow.actions.invoke({ name: 'mine/echo', blocking: true, result: true })
  assert.deepEqual([res.greeting, res.who], ['hi', 'action'])

  step('another namespace binds the public package')
  await other.packages.create({ name: 'theirs', package: { binding: { namespace: 'guest', name: 'tools' }, parameters: [{ key: 'greeting', value: 'hey' }] } })
  res = await other.actions.invoke({ name: 'theirs/echo', blocking: true, result: true })
  assert.equal(res.greeting, 'hey')
  res = await other.actions.invoke({ name: '/guest/tools/echo', blocking: true, result: true })
  assert.equal(res.greeting, 'hello')
  assert.equal((await other.packages.get({ name: '/guest/tools' })).name, 'tools')
  assert.deepEqual((await other.packages.list({ namespace: 'guest' })).map((p) => p.name), ['tools'])

  step('a private package is refused to another namespace')
  await ow.packages.create({ name: 'private' })
  await assert.rejects(other.packages.get({ name: '/guest/private' }), (e) => e.statusCode === 403)
  await assert.rejects(
    other.packages.create({ name: 'nope', package: { binding: { namespace: 'guest', name: 'private' } } }),
    (e) => e.statusCode === 403 && /not authorized to access 'guest\/private'/.test(e.message))

  step('packages.delete')
  await assert.rejects(ow.packages.delete({ name: 'tools' }), (e) => e.statusCode === 409)
  await ow.actions.delete({ name: 'tools/echo' })
  for (const name of ['mine', 'tools', 'private']) await ow.packages.delete({ name })
  await other.packages.delete({ name: 'theirs' })
  await assert.rejects(ow.packages.get({ name: 'tools' }), (e) => e.statusCode === 404)

  process.stdout.write('ok\n')
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`)
  process.exit(1)
})
