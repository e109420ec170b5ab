// Drives sequences and conductor actions with the npm `openwhisk` client. Run by
// controller-adapter/internal/api's Go tests with OW_APIHOST and OW_AUTH (namespace guest) set,
// against an invoker whose actions a, b and c append their name to the "trail" parameter, bad
// fails with {"error":"boom"}, and cond conducts a -> pkg/c; exits non-zero with the failing step
// on stderr.
'use strict'

const assert = require('node:assert/strict')
const openwhisk = require('openwhisk')

async function main () {
  const ow = openwhisk({ apihost: process.env.OW_APIHOST, api_key: process.env.OW_AUTH, namespace: '_', retry: false })
  const step = (s) => process.stdout.write(`step: ${s}\n`)
  const code = 'function main(p) { return p }'

  step('components')
  await ow.actions.create({ name: 'a', action: code, params: { pa: 1 } })
  await ow.actions.create({ name: 'b', action: code })
  await ow.actions.create({ name: 'bad', action: code })
  await ow.packages.create({ name: 'pkg' })
  await ow.actions.create({ name: 'pkg/c', action: code })

  step('actions.create with sequence')
  const seq = await ow.actions.create({ name: 's', sequence: ['/_/a', '/_/pkg/c', '/_/b'] })
  assert.equal(seq.exec.kind, 'sequence')
  assert.deepEqual(seq.exec.components, ['/guest/a', '/guest/pkg/c', '/guest/b'])

  step('actions.get')
  const got = await ow.actions.get({ name: 's' })
  assert.deepEqual(got.exec.components, ['/guest/a', '/guest/pkg/c', '/guest/b'])

  step('invoke blocking, result of the last component')
  const res = await ow.actions.invoke({ name: 's', params: { trail: '>' }, blocking: true, result: true })
  assert.equal(res.trail, '>acb')
  assert.equal(res.pa, 1)

  step('invoke blocking, the sequence activation')
  const act = await ow.actions.invoke({ name: 's', blocking: true })
  assert.equal(act.response.result.trail, 'acb')
  assert.equal(act.logs.length, 3)
  const ann = Object.fromEntries(act.annotations.map((kv) => [kv.key, kv.value]))
  assert.equal(ann.topmost, true)
  assert.equal(ann.kind, 'sequence')

  step('a component error ends the sequence')
  await ow.actions.create({ name: 'e', sequence: ['/_/a', '/_/bad', '/_/b'] })
  await assert.rejects(ow.actions.invoke({ name: 'e', blocking: true }),
    (e) => e.statusCode === 502 && e.error.response.result.error === 'boom' && e.error.logs.length === 2)

  step('nested sequence')
  await ow.actions.create({ name: 'outer', sequence: ['/_/s', '/_/a'] })
  assert.equal((await ow.actions.invoke({ name: 'outer', blocking: true, result: true })).trail, 'acba')

  step('non-blocking, then activations.get')
  const { activationId } = await ow.actions.invoke({ name: 's' })
  let rec
  for (let i = 0; i < 200 && !rec; i++) {
    rec = await ow.activations.get({ name: activationId }).catch((e) => {
      if (e.statusCode !== 404) throw e
      return new Promise((resolve) => setTimeout(resolve, 25))
    })
  }
  assert.ok(rec, 'the sequence record was not stored')
  assert.equal(rec.logs.length, 3)
  for (const id of rec.logs) {
    assert.equal((await ow.activations.get({ name: id })).cause, activationId)
  }

  step('a sequence that reaches itself is refused')
  await assert.rejects(ow.actions.update({ name: 's', sequence: ['/_/outer'] }),
    (e) => e.statusCode === 400 && e.error.error === 'Sequence may not refer to itself.')

  step('conductor action')
  await ow.actions.create({ name: 'cond', action: code, annotations: { conductor: true } })
  const comp = await ow.actions.invoke({ name: 'cond', blocking: true })
  assert.equal(comp.response.result.trail, '<ac')
  assert.equal(comp.logs.length, 5)
  assert.ok(comp.annotations.some((kv) => kv.key === 'conductor' && kv.value === true))

  process.stdout.write('ok\n')
}

main().catch((e) => {
  process.stderr.write(`FAILED: ${e.stack || e}\n${e.error ? JSON.stringify(e.error) : ''}\n`)
  process.exit(1)
})
