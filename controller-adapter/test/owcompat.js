// The checks of README.md's "Compatibility with OpenWhisk" table through the npm `openwhisk`
// client, one per row, named as the table names them. Run by TestCompatibilityTable
// (controller-adapter/embed/compat_test.go) against a real platform with OW_APIHOST, OW_AUTH
// (namespace tenant), OW_SYSTEM_AUTH (whisk.system), OW_THROTTLED_AUTH (namespace throttled, 2
// invocations and 1 trigger fire a minute), OW_CROWDED_AUTH (namespace crowded, 1 activation in
// flight), OW_ZIP (a zipped action: package.json main lib.js, exporting handler) and OW_CHECKS (the names to run, in order). Prints one JSON line per
// check: {check, ms} when the feature worked, {check, error} when it failed, {check, missing}
// when this script has no such check; the Go test compares them with the rows.
'use strict'

const assert = require('node:assert/strict')
const fs = require('node:fs')
const openwhisk = require('openwhisk')

const host = process.env.OW_APIHOST
const client = (key) => openwhisk({ apihost: host, api_key: key, retry: false })
const ow = client(process.env.OW_AUTH)
const sys = client(process.env.OW_SYSTEM_AUTH)
const thr = client(process.env.OW_THROTTLED_AUTH)
const crowded = client(process.env.OW_CROWDED_AUTH)
const bad = client(process.env.OW_AUTH.split(':')[0] + ':wrong')
const THROTTLED_PER_MINUTE = 2
const THROTTLED_FIRES = 1
const echo = 'function main(p) { return p }'
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// request is the client's own transport for what it has no call for (path relative to /api/v1/,
// or absolute).
const request = (method, path) => ow.actions.client.request(method, path)

// action creates or replaces a nodejs:20 action.
function action (c, name, code, extra = {}) {
  return c.actions.update({ name, action: { exec: { kind: 'nodejs:20', code }, ...extra } })
}

async function refused (promise, status, text) {
  try {
    await promise
  } catch (e) {
    assert.equal(e.statusCode, status, e.message)
    assert.ok(e.message.includes(text), e.message)
    return e
  }
  assert.fail(`not refused, want ${status} ${text}`)
}

// activation polls until the record is stored.
async function activation (id) {
  for (let i = 0; ; i++) {
    try {
      return await ow.activations.get({ activationId: id })
    } catch (e) {
      if (e.statusCode !== 404 || i > 200) throw e
      await sleep(100)
    }
  }
}

// latest polls for the newest activation of name started after since.
async function latest (name, since) {
  for (let i = 0; i < 100; i++) {
    const list = await ow.activations.list({ name, limit: 5, docs: true })
    if (list.length > 0 && list[0].start >= since) return list[0]
    await sleep(200)
  }
  assert.fail(`no activation of ${name}`)
}

async function sequenceFixture () {
  await action(ow, 'js-inc', 'function main(p) { return { n: p.n + 1 } }')
  await action(ow, 'js-bad', 'function main(p) { return { error: "boom at " + p.n } }')
  await ow.actions.update({ name: 'js-seq', action: { exec: { kind: 'sequence', components: ['/_/js-inc', '/_/js-inc'] } } })
  await ow.actions.update({ name: 'js-seqbad', action: { exec: { kind: 'sequence', components: ['/_/js-inc', '/_/js-bad', '/_/js-inc'] } } })
}

// alarm feeds a trigger from /whisk.system/alarms/alarm every second, with a rule to an action,
// and returns the action's first activation; the feed is deleted after.
async function alarm (name, code, annotations = []) {
  await action(ow, name, code, { annotations })
  const trigger = name + '-tick'
  await ow.triggers.update({ name: trigger, trigger: { annotations: [{ key: 'feed', value: '/whisk.system/alarms/alarm' }] } })
  await ow.rules.update({ name: name + '-rule', trigger, action: name })
  const since = Date.now()
  await ow.feeds.create({ name: '/whisk.system/alarms/alarm', trigger, params: { cron: '* * * * * *' } })
  try {
    return await latest(name, since)
  } catch (e) {
    // Say what the trigger's activations say of the rule.
    const fired = await ow.activations.list({ name: trigger, limit: 1, docs: true })
    throw new Error(`${e.message}; the trigger's last activation: ${JSON.stringify(fired[0] && fired[0].logs)}`)
  } finally {
    await ow.feeds.delete({ name: '/whisk.system/alarms/alarm', trigger })
  }
}

// kind creates and invokes an action of kind.
async function kind (name, k) {
  const exec = k === 'blackbox' ? { kind: k, image: 'openwhisk/dockerskeleton' }
    : { kind: k, code: k.startsWith('nodejs') ? echo : 'def main(args):\n  return args' }
  await ow.actions.update({ name, action: { exec } })
  return ow.actions.invoke({ name, blocking: true, result: true })
}

const checks = {
  'actions.crud': async () => {
    const code = 'function main() { return { v: 1 } }'
    await ow.actions.create({ name: 'js-crud', action: code })
    await refused(ow.actions.create({ name: 'js-crud', action: code }), 409, '')
    await ow.actions.update({ name: 'js-crud', action: { annotations: [{ key: 'web-export', value: true }] } })
    let a = await ow.actions.get({ name: 'js-crud', code: false })
    assert.equal(a.exec.code, undefined)
    assert.equal(a.version, '0.0.2')
    assert.deepEqual(a.annotations.find((x) => x.key === 'web-export').value, true)
    a = await ow.actions.get({ name: 'js-crud' })
    assert.equal(a.exec.code, code)
    await ow.actions.delete({ name: 'js-crud' })
    await refused(ow.actions.get({ name: 'js-crud' }), 404, 'The requested resource does not exist.')
  },
  'actions.list': async () => {
    await action(ow, 'js-list-a', echo)
    await action(ow, 'js-list-b', echo)
    const all = await ow.actions.list({ limit: 200 })
    const names = all.map((a) => a.name)
    assert.ok(names.includes('js-list-a') && names.includes('js-list-b'), names.join())
    const one = await ow.actions.list({ limit: 1, skip: 1 })
    assert.equal(one.length, 1)
    assert.equal(one[0].name, all[1].name)
  },
  'actions.zip': async () => {
    const code = fs.readFileSync(process.env.OW_ZIP).toString('base64')
    await ow.actions.update({ name: 'js-zipped', action: { exec: { kind: 'nodejs:20', code, binary: true, main: 'handler' } } })
    assert.deepEqual(await ow.actions.invoke({ name: 'js-zipped', params: { who: 'js' }, blocking: true, result: true }), { zipped: true, who: 'js', dep: 42 })
  },
  'actions.limits': async () => {
    await action(ow, 'js-limited', echo, { limits: { timeout: 5000, memory: 256, logs: 2 } })
    assert.deepEqual((await ow.actions.get({ name: 'js-limited', code: false })).limits, { timeout: 5000, memory: 256, logs: 2, concurrency: 1 })
    await refused(ow.actions.update({ name: 'js-limited', action: { limits: { memory: 100000 } } }), 400, 'memory 100000 MB is outside the allowed range')
  },
  'actions.concurrency': async () => {
    await action(ow, 'js-shared-container', echo, { limits: { concurrency: 2 } })
  },
  'invoke.blocking': async () => {
    await action(ow, 'js-echo', echo)
    const a = await ow.actions.invoke({ name: 'js-echo', params: { name: 'Bob' }, blocking: true })
    assert.ok(a.activationId)
    assert.equal(a.response.success, true)
    assert.equal(a.response.result.name, 'Bob')
  },
  'invoke.nonblocking': async () => {
    await action(ow, 'js-echo', echo)
    const a = await ow.actions.invoke({ name: 'js-echo', params: { name: 'later' } })
    assert.deepEqual(Object.keys(a), ['activationId'])
    const rec = await activation(a.activationId)
    assert.equal(rec.response.result.name, 'later')
  },
  'invoke.result': async () => {
    await action(ow, 'js-echo', echo)
    assert.deepEqual(await ow.actions.invoke({ name: 'js-echo', params: { x: 1 }, blocking: true, result: true }), { x: 1 })
  },
  'invoke.params': async () => {
    await action(ow, 'js-params', echo, { parameters: [{ key: 'a', value: 'action' }, { key: 'b', value: 'action' }] })
    assert.deepEqual(await ow.actions.invoke({ name: 'js-params', params: { b: 'invocation' }, blocking: true, result: true }),
      { a: 'action', b: 'invocation' })
  },
  'web.json': async () => {
    await action(ow, 'js-web', echo, { annotations: [{ key: 'web-export', value: true }] })
    const r = await request('GET', '/api/v1/web/tenant/default/js-web.json?x=1')
    assert.equal(r.x, '1')
  },
  'web.http': async () => {
    await action(ow, 'js-webhttp', 'function main() { return { statusCode: 201, headers: { "x-compat": "yes" }, body: "made" } }',
      { annotations: [{ key: 'web-export', value: true }] })
    // The client's request answers the body only; status and headers need a plain fetch.
    const r = await fetch(`${host}/api/v1/web/tenant/default/js-webhttp.http`)
    assert.equal(r.status, 201)
    assert.equal(r.headers.get('x-compat'), 'yes')
    assert.equal(await r.text(), 'made')
  },
  'web.raw': async () => {
    await action(ow, 'js-raw', 'function main(p) { return { body: p.__ow_body, query: p.__ow_query, plain: p.a } }',
      { annotations: [{ key: 'web-export', value: true }, { key: 'raw-http', value: true }] })
    const r = await fetch(`${host}/api/v1/web/tenant/default/js-raw.json?a=1`, { method: 'POST', body: 'hello', headers: { 'Content-Type': 'text/plain' } })
    assert.deepEqual(await r.json(), { body: 'hello', query: 'a=1' })
  },
  'web.auth': async () => {
    await action(ow, 'js-guarded', echo, { annotations: [{ key: 'web-export', value: true }, { key: 'require-whisk-auth', value: 's3cret' }] })
    const path = `${host}/api/v1/web/tenant/default/js-guarded.json?x=1`
    assert.equal((await fetch(path)).status, 401)
    const r = await fetch(path, { headers: { 'X-Require-Whisk-Auth': 's3cret' } })
    assert.equal(r.status, 200)
    assert.equal((await r.json()).x, '1')
  },
  'activations.list': async () => {
    await action(ow, 'js-listed', echo)
    const since = Date.now() - 1000
    await ow.actions.invoke({ name: 'js-listed', blocking: true })
    await latest('js-listed', since)
  },
  'activations.get': async () => {
    await action(ow, 'js-logger', 'function main() { console.log("hello log"); return { done: true } }')
    const { activationId } = await ow.actions.invoke({ name: 'js-logger', blocking: true })
    const a = await activation(activationId)
    assert.equal(a.name, 'js-logger')
    const { logs } = await ow.activations.logs({ activationId })
    assert.equal(logs.length, 1)
    assert.ok(logs[0].endsWith('stdout: hello log'), logs[0])
    const r = await ow.activations.result({ activationId })
    assert.equal(r.result.done, true)
  },
  'namespaces.list': async () => {
    assert.deepEqual(await ow.namespaces.list(), ['tenant'])
  },
  'auth.errors': async () => {
    await refused(bad.actions.list(), 401, 'The supplied authentication is invalid')
    await action(sys, 'js-private', echo)
    await refused(ow.actions.invoke({ name: '/whisk.system/js-private', blocking: true }), 403, 'not authorized')
  },
  'packages.crud': async () => {
    await ow.packages.create({ name: 'js-pkg' })
    await ow.packages.update({ name: 'js-pkg', package: { parameters: [{ key: 'p', value: 1 }] } })
    await action(ow, 'js-pkg/a', echo)
    const p = await ow.packages.get({ name: 'js-pkg' })
    assert.deepEqual(p.actions.map((a) => a.name), ['a'])
    assert.deepEqual(p.parameters, [{ key: 'p', value: 1 }])
    assert.ok((await ow.packages.list({ limit: 100 })).some((q) => q.name === 'js-pkg'))
    await refused(ow.packages.delete({ name: 'js-pkg' }), 409, '')
    await ow.actions.delete({ name: 'js-pkg/a' })
    await ow.packages.delete({ name: 'js-pkg' })
    await refused(ow.packages.get({ name: 'js-pkg' }), 404, '')
  },
  'packages.params': async () => {
    await ow.packages.update({ name: 'js-inherit', package: { parameters: [{ key: 'a', value: 'pkg' }, { key: 'b', value: 'pkg' }, { key: 'c', value: 'pkg' }] } })
    await action(ow, 'js-inherit/echo', echo, { parameters: [{ key: 'b', value: 'action' }, { key: 'c', value: 'action' }] })
    assert.deepEqual(await ow.actions.invoke({ name: 'js-inherit/echo', params: { c: 'inv' }, blocking: true, result: true }),
      { a: 'pkg', b: 'action', c: 'inv' })
  },
  'packages.binding': async () => {
    await ow.packages.update({ name: 'js-bound', package: { parameters: [{ key: 'a', value: 'pkg' }, { key: 'b', value: 'pkg' }] } })
    await action(ow, 'js-bound/echo', echo)
    await ow.packages.update({ name: 'js-binding', package: { binding: { namespace: 'tenant', name: 'js-bound' }, parameters: [{ key: 'b', value: 'binding' }] } })
    assert.deepEqual(await ow.actions.invoke({ name: 'js-binding/echo', blocking: true, result: true }), { a: 'pkg', b: 'binding' })
  },
  'packages.shared': async () => {
    await sys.packages.update({ name: 'js-shared', package: { publish: true, parameters: [{ key: 'who', value: 'system' }] } })
    await action(sys, 'js-shared/echo', echo)
    await sys.packages.update({ name: 'js-hidden' })
    await action(sys, 'js-hidden/echo', echo)
    const names = (await ow.packages.list({ namespace: 'whisk.system', limit: 100 })).map((p) => p.name)
    assert.ok(names.includes('js-shared') && names.includes('alarms') && !names.includes('js-hidden'), names.join())
    assert.deepEqual(await ow.actions.invoke({ name: '/whisk.system/js-shared/echo', blocking: true, result: true }), { who: 'system' })
    await ow.packages.update({ name: 'js-mine', package: { binding: { namespace: 'whisk.system', name: 'js-shared' }, parameters: [{ key: 'who', value: 'tenant' }] } })
    assert.deepEqual(await ow.actions.invoke({ name: 'js-mine/echo', blocking: true, result: true }), { who: 'tenant' })
    await refused(ow.actions.invoke({ name: '/whisk.system/js-hidden/echo', blocking: true }), 403, 'not authorized')
    await refused(ow.packages.update({ name: 'js-theirs', package: { binding: { namespace: 'whisk.system', name: 'js-hidden' } } }), 403, 'not authorized')
  },
  'packages.web': async () => {
    await ow.packages.update({ name: 'js-webpkg', package: { parameters: [{ key: 'from', value: 'pkg' }] } })
    await action(ow, 'js-webpkg/page', echo, { annotations: [{ key: 'web-export', value: true }] })
    assert.deepEqual(await ow.actions.invoke({ name: 'js-webpkg/page', blocking: true, result: true }), { from: 'pkg' })
    const r = await request('GET', '/api/v1/web/tenant/js-webpkg/page.json')
    assert.equal(r.from, 'pkg')
  },
  'sequences.run': async () => {
    await sequenceFixture()
    assert.deepEqual(await ow.actions.invoke({ name: 'js-seq', params: { n: 1 }, blocking: true, result: true }), { n: 3 })
    const e = await ow.actions.invoke({ name: 'js-seqbad', params: { n: 1 }, blocking: true, result: true }).catch((e) => e)
    assert.ok(e instanceof Error && e.message.includes('boom at 2'), String(e && e.message))
  },
  'sequences.record': async () => {
    await sequenceFixture()
    const { activationId } = await ow.actions.invoke({ name: 'js-seq', params: { n: 1 }, blocking: true })
    const a = await activation(activationId)
    assert.equal(a.logs.length, 2)
    const comp = await activation(a.logs[1])
    assert.equal(comp.name, 'js-inc')
    assert.equal(comp.annotations.find((x) => x.key === 'causedBy').value, 'sequence')
  },
  'sequences.limit': async () => {
    await sequenceFixture()
    await refused(ow.actions.update({ name: 'js-long', action: { exec: { kind: 'sequence', components: Array(51).fill('/_/js-inc') } } }),
      400, 'Too many actions in the sequence.')
  },
  'conductor.run': async () => {
    await sequenceFixture()
    await action(ow, 'js-conductor', `function main(p) {
      if (p.step === undefined) return { action: 'js-inc', params: { n: p.n }, state: { step: 1 } };
      if (p.step === 1) return { action: 'js-inc', params: { n: p.n }, state: { step: 2 } };
      return { params: { n: p.n, steps: p.step } };
    }`, { annotations: [{ key: 'conductor', value: true }] })
    assert.deepEqual(await ow.actions.invoke({ name: 'js-conductor', params: { n: 10 }, blocking: true, result: true }), { n: 12, steps: 2 })
  },
  'triggers.crud': async () => {
    await ow.triggers.create({ name: 'js-trig' })
    await ow.triggers.update({ name: 'js-trig', trigger: { parameters: [{ key: 't', value: 1 }] } })
    const tr = await ow.triggers.get({ name: 'js-trig' })
    assert.deepEqual(tr.parameters, [{ key: 't', value: 1 }])
    assert.equal(tr.version, '0.0.2')
    assert.ok((await ow.triggers.list({ limit: 100 })).some((x) => x.name === 'js-trig'))
    await ow.triggers.delete({ name: 'js-trig' })
    await refused(ow.triggers.get({ name: 'js-trig' }), 404, '')
  },
  'rules.crud': async () => {
    await ow.triggers.update({ name: 'js-rtrig' })
    await action(ow, 'js-echo', echo)
    await ow.rules.update({ name: 'js-rule', trigger: 'js-rtrig', action: 'js-echo' })
    assert.equal((await ow.rules.get({ name: 'js-rule' })).status, 'active')
    await ow.rules.disable({ name: 'js-rule' })
    assert.equal((await ow.rules.get({ name: 'js-rule' })).status, 'inactive')
    await ow.rules.enable({ name: 'js-rule' })
    assert.equal((await ow.rules.get({ name: 'js-rule' })).status, 'active')
    await ow.rules.delete({ name: 'js-rule' })
    await refused(ow.rules.get({ name: 'js-rule' }), 404, '')
  },
  'triggers.fire': async () => {
    await ow.triggers.update({ name: 'js-ftrig', trigger: { parameters: [{ key: 'from', value: 'trigger' }] } })
    await action(ow, 'js-fired', echo)
    await ow.rules.update({ name: 'js-frule', trigger: 'js-ftrig', action: 'js-fired' })
    const { activationId } = await ow.triggers.invoke({ name: 'js-ftrig', params: { x: 1 } })
    const ta = await activation(activationId)
    assert.equal(ta.logs.length, 1)
    const line = JSON.parse(ta.logs[0])
    assert.equal(line.success, true, ta.logs[0])
    const a = await activation(line.activationId)
    assert.equal(a.response.result.x, 1)
    assert.equal(a.response.result.from, 'trigger')
  },
  'feeds.alarm': async () => {
    await alarm('js-alarm', echo)
  },
  'feeds.nokey': async () => {
    const a = await alarm('js-nokey', 'function main() { return { key: process.env.__OW_API_KEY || "none" } }', [{ key: 'provide-api-key', value: true }])
    assert.equal(a.response.result.key, 'none')
  },
  'feeds.lifecycle': async () => {
    const configs = { interval: { minutes: 1 }, once: { date: new Date(Date.now() + 3600e3).toISOString() } }
    for (const [feed, params] of Object.entries(configs)) {
      const trigger = 'js-' + feed
      const name = '/whisk.system/alarms/' + feed
      await ow.triggers.update({ name: trigger, trigger: { annotations: [{ key: 'feed', value: name }] } })
      await ow.feeds.create({ name, trigger, params })
      const read = await ow.feeds.get({ name, trigger })
      const config = read.response.result.config
      // The date comes back as a date, in Go's RFC 3339 (no trailing zeros in the fraction).
      if (feed === 'once') assert.equal(Date.parse(config.date), Date.parse(params.date), JSON.stringify(config))
      else assert.equal(config.minutes, params.minutes, JSON.stringify(config))
      await ow.feeds.delete({ name, trigger })
    }
  },
  'throttle.invocations': async () => {
    await action(thr, 'js-echo', echo)
    // One more than the limit and one for a minute that turns in between.
    for (let i = 0; i < THROTTLED_PER_MINUTE + 2; i++) {
      try {
        await thr.actions.invoke({ name: 'js-echo' })
      } catch (e) {
        assert.equal(e.statusCode, 429, e.message)
        assert.match(e.message, new RegExp(`Too many requests in the last minute \\(count: \\d+, allowed: ${THROTTLED_PER_MINUTE}\\)\\.`))
        return
      }
    }
    assert.fail(`${THROTTLED_PER_MINUTE + 2} invocations, none refused`)
  },
  'throttle.fires': async () => {
    await thr.triggers.update({ name: 'js-often' })
    for (let i = 0; i < THROTTLED_FIRES + 2; i++) {
      try {
        await thr.triggers.invoke({ name: 'js-often' })
      } catch (e) {
        assert.equal(e.statusCode, 429, e.message)
        assert.match(e.message, new RegExp(`Too many requests in the last minute \\(count: \\d+, allowed: ${THROTTLED_FIRES}\\)\\.`))
        return
      }
    }
    assert.fail(`${THROTTLED_FIRES + 2} fires, none refused`)
  },
  'throttle.concurrent': async () => {
    await action(crowded, 'js-hold', 'function main() { return new Promise(() => {}) }', { limits: { timeout: 1000 } })
    await crowded.actions.invoke({ name: 'js-hold' })
    await refused(crowded.actions.invoke({ name: 'js-hold' }), 429, 'Too many concurrent requests in flight (count: 1, allowed: 1).')
  },
  'limits.get': async () => {
    const l = await thr.actions.client.request('GET', 'namespaces/_/limits')
    assert.equal(l.invocationsPerMinute, THROTTLED_PER_MINUTE)
    assert.equal(l.concurrentInvocations, 30)
    assert.equal(l.firesPerMinute, THROTTLED_FIRES)
  },
  'info.root': async () => {
    const r = await request('GET', '/')
    assert.ok(r.runtimes.nodejs, JSON.stringify(r))
    assert.ok(r.limits.actions_per_minute, JSON.stringify(r))
  },
  'info.apidocs': async () => {
    const d = await request('GET', 'api-docs')
    assert.match(d.openapi, /^3\./)
    assert.ok(d.paths['/api/v1/namespaces/{namespace}/actions/{name}'])
  },
  'info.metrics': async () => {
    const m = await request('GET', '/metrics')
    assert.ok(String(m).includes('teemate_controller_http_requests_total'), String(m).slice(0, 200))
  },
  'info.cors': async () => {
    // Preflights carry no key and their answer is in the headers: a plain fetch, as a browser.
    const r = await fetch(`${host}/api/v1/namespaces/_/actions`, { method: 'OPTIONS', headers: { Origin: 'https://example.com', 'Access-Control-Request-Method': 'PUT' } })
    assert.equal(r.status, 200)
    assert.equal(r.headers.get('access-control-allow-origin'), '*')
    const g = await fetch(`${host}/api/v1/namespaces/_/actions`, { headers: { Authorization: 'Basic ' + Buffer.from(process.env.OW_AUTH).toString('base64') } })
    assert.equal(g.headers.get('access-control-allow-origin'), '*')
  },
  'lists.count': async () => {
    const all = await ow.actions.list({ limit: 200 })
    assert.deepEqual(await ow.actions.list({ count: true }), { actions: all.length })
    const n = await ow.activations.list({ count: true })
    assert.ok(n.activations > 0, JSON.stringify(n))
  },
  'entities.version': async () => {
    let a = await ow.actions.update({ name: 'js-versioned', action: { exec: { kind: 'nodejs:20', code: echo }, version: '3.0.0' } })
    assert.equal(a.version, '3.0.0')
    a = await ow.actions.update({ name: 'js-versioned', action: { parameters: [{ key: 'x', value: 1 }] } })
    assert.equal(a.version, '3.0.1')
  },
  'runtime.fetch': async () => {
    await action(ow, 'js-fetch', 'async function main() { const r = await fetch(process.env.__OW_API_HOST + "/api/v1"); return { status: r.status } }',
      { annotations: [{ key: 'network', value: true }], limits: { timeout: 10000 } })
    assert.deepEqual(await ow.actions.invoke({ name: 'js-fetch', blocking: true, result: true }), { status: 200 })
  },
  'runtime.network': async () => {
    await action(ow, 'js-net', `function main() {
      const u = new URL(process.env.__OW_API_HOST);
      return new Promise((resolve, reject) => {
        require('http').get({ host: u.hostname, port: u.port, path: '/api/v1' }, (res) => { res.resume(); resolve({ status: res.statusCode }) }).on('error', reject);
      });
    }`, { annotations: [{ key: 'network', value: true }], limits: { timeout: 10000 } })
    assert.deepEqual(await ow.actions.invoke({ name: 'js-net', blocking: true, result: true }), { status: 200 })
  },
  'runtime.logvolume': async () => {
    await action(ow, 'js-chatty', 'function main() { for (let i = 0; i < 15000; i++) console.log(String(i).padStart(40, ".")); return { done: true } }',
      { limits: { timeout: 20000 } })
    const { activationId } = await ow.actions.invoke({ name: 'js-chatty', blocking: true })
    assert.equal((await ow.activations.logs({ activationId })).logs.length, 15000)
  },
  'runtime.logtruncation': async () => {
    await action(ow, 'js-flood', 'function main() { const l = "y".repeat(1000); for (let i = 0; i < 2000; i++) console.log(l); return { done: true } }',
      { limits: { timeout: 20000, logs: 1 } })
    const { activationId } = await ow.actions.invoke({ name: 'js-flood', blocking: true })
    const { logs } = await ow.activations.logs({ activationId })
    assert.ok(logs.at(-1).endsWith('Logs were truncated because the total bytes size exceeds the limit of 1048576 bytes.'), logs.at(-1))
  },
  'runtime.neversettles': async () => {
    await action(ow, 'js-never', 'function main() { return new Promise(() => {}) }', { limits: { timeout: 1500 } })
    await refused(ow.actions.invoke({ name: 'js-never', blocking: true, result: true }), 502, 'The action exceeded its time limits of 1500 milliseconds.')
  },
  'runtime.openhandles': async () => {
    await action(ow, 'js-lingering', 'function main() { setInterval(() => {}, 10); return { resolved: true } }', { limits: { timeout: 10000 } })
    const t0 = Date.now()
    assert.deepEqual(await ow.actions.invoke({ name: 'js-lingering', blocking: true, result: true }), { resolved: true })
    assert.ok(Date.now() - t0 < 5000, `answered after ${Date.now() - t0} ms`)
  },
  'runtime.openwhiskmodule': async () => {
    await action(ow, 'js-lister', 'async function main() { const ow = require("openwhisk")(); return { names: (await ow.actions.list()).map((a) => a.name) } }',
      { annotations: [{ key: 'network', value: true }, { key: 'provide-api-key', value: true }], limits: { timeout: 20000 } })
    const r = await ow.actions.invoke({ name: 'js-lister', blocking: true, result: true })
    assert.ok(r.names.includes('js-lister'), JSON.stringify(r))
  },
  'runtime.nodejs18': async () => {
    await kind('js-node18', 'nodejs:18')
  },
  'runtime.otherkinds': async () => {
    for (const k of ['python:3', 'java:8', 'blackbox']) {
      try {
        await kind('js-' + k.replace(':', ''), k)
        return
      } catch (e) {
        assert.ok(e.message.includes('not supported'), `${k} refused without saying why: ${e.message}`)
      }
    }
    throw new Error('python:3, java:8 and blackbox are not supported')
  },
  'apigw.create': async () => {
    await ow.routes.create({ basepath: '/js', relpath: '/hello', operation: 'GET', action: 'js-echo' })
  }
}

async function main () {
  for (const name of process.env.OW_CHECKS.split(',')) {
    const check = checks[name]
    if (!check) {
      console.log(JSON.stringify({ check: name, missing: true }))
      continue
    }
    const t0 = Date.now()
    try {
      await check()
      console.log(JSON.stringify({ check: name, ms: Date.now() - t0 }))
    } catch (e) {
      console.log(JSON.stringify({ check: name, ms: Date.now() - t0, error: String((e && e.message) || e) }))
    }
  }
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
