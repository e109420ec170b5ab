// Drives triggers, rules, fires and the alarms feed with the npm `openwhisk` client. Run by
// controller-adapter/internal/api's Go tests with OW_APIHOST and OW_AUTH (namespace guest) set,
// against a controller whose fake invoker echoes parameters and which serves the alarms feed;
// exits non-zero with the failing step on stderr.
'use strict'

const assert = require('node:assert/strict')
const openwhisk = require('openwhisk')

async function main () {
  const ow = openwhisk({ apihost: process.env.OW_APIHOST, api_key: process.env.OW_AUTH, namespace: '_', retry: false })
  const step = (s) => process.stdout.write(`step: ${s}\n`)

  step('actions.create')
  await ow.actions.create({ name: 'hello', action: 'function main(p) { return p }' })

  step('triggers.create')
  const t = await ow.triggers.create({ name: 't', trigger: { parameters: [{ key: 'from', value: 'trigger' }] } })
  assert.equal(t.name, 't')
  assert.equal(t.namespace, 'guest')

  step('triggers.invoke without rules')
  const none = await ow.triggers.invoke({ name: 't', params: { a: 1 } })
  assert.ok(!none || !none.activationId)

  step('rules.create')
  const r = await ow.rules.create({ name: 'r', action: 'hello', trigger: 't' })
  assert.equal(r.status, 'active')
  assert.deepEqual(r.trigger, { path: 'guest', name: 't' })
  assert.deepEqual(r.action, { path: 'guest', name: 'hello' })

  step('triggers.get shows the rule')
  const got = await ow.triggers.get({ name: 't' })
  assert.deepEqual(got.rules['guest/r'], { action: { path: 'guest', name: 'hello' }, status: 'active' })

  step('triggers.invoke')
  const fired = await ow.triggers.invoke({ name: 't', params: { a: 1 } })
  assert.match(fired.activationId, /^[0-9a-f]{32}$/)

  step('activations.get of the trigger')
  const act = await ow.activations.get({ name: fired.activationId })
  assert.equal(act.name, 't')
  const outcome = JSON.parse(act.logs[0])
  assert.equal(outcome.success, true)
  assert.equal(outcome.statusCode, 0)
  assert.equal(outcome.rule, 'guest/r')
  assert.equal(outcome.action, 'guest/hello')
  assert.match(outcome.activationId, /^[0-9a-f]{32}$/)
  const ruleAct = await ow.activations.get({ name: outcome.activationId })
  assert.equal(ruleAct.cause, fired.activationId)
  assert.equal(ruleAct.response.result.from, 'trigger')
  assert.equal(ruleAct.response.result.a, 1)

  step('rules.disable')
  await ow.rules.disable({ name: 'r' })
  assert.equal((await ow.rules.get({ name: 'r' })).status, 'inactive')
  const off = await ow.triggers.invoke({ name: 't' })
  assert.ok(!off || !off.activationId)

  step('rules.enable')
  await ow.rules.enable({ name: 'r' })
  assert.equal((await ow.rules.get({ name: 'r' })).status, 'active')

  step('rules.list and triggers.list')
  assert.deepEqual((await ow.rules.list()).map((x) => x.name), ['r'])
  assert.deepEqual((await ow.triggers.list()).map((x) => x.name), ['t'])

  step('feeds.create interval')
  await ow.triggers.create({ name: 'tick', trigger: { annotations: [{ key: 'feed', value: '/whisk.system/alarms/interval' }] } })
  const created = await ow.feeds.create({ name: '/whisk.system/alarms/interval', trigger: 'tick', params: { minutes: 1 } })
  assert.equal(created.response.success, true)
  await assert.rejects(ow.feeds.create({ name: '/whisk.system/alarms/alarm', trigger: 'tick', params: { cron: 'nope' } }),
    (e) => e.statusCode === 502 && /cron pattern 'nope' is not valid/.test(JSON.stringify(e.error)))

  step('feeds.get')
  const read = await ow.feeds.get({ name: '/whisk.system/alarms/interval', trigger: 'tick' })
  assert.equal(read.response.result.config.minutes, 1)

  step('feeds.delete and deletes')
  await ow.feeds.delete({ name: '/whisk.system/alarms/interval', trigger: 'tick' })
  await ow.triggers.delete({ name: 'tick' })
  await ow.rules.delete({ name: 'r' })
  await ow.triggers.delete({ name: 't' })
  await assert.rejects(ow.triggers.get({ name: 't' }), (e) => e.statusCode === 404)
  await ow.actions.delete({ name: 'hello' })

  process.stdout.write('ok\n')
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`)
  process.exit(1)
})
