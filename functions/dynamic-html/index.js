'use strict';
// dynamic-html: the SeBS 110.dynamic-html function, written for this project. It draws random_len
// random integers in [0, 100], and renders an HTML page greeting `username`, stamped with the current
// time, with one <li> per number. Rendering uses the small mustache-like template engine below (no npm
// modules): {{name}} (HTML-escaped), {{{name}}} (raw), {{#name}}...{{/name}} (repeat over an array, or
// show if truthy) and {{.}} (the current element).
//
// Params: username (string, default "testname"), random_len (integer in [0, 1 000 000], required),
// seed (optional integer: draw from a seeded generator instead of Math.random), summary (boolean).
// OpenWhisk caps an activation result at 1 MiB, so for big pages (and whenever summary is true) the
// result carries the page's length, <li> count, head and tail instead of the page itself.

const MAX_LEN = 1000000;
const MAX_INLINE = 768 * 1024;

const TEMPLATE = `<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>Random numbers for {{username}}</title>
  </head>
  <body>
    <h1>Welcome {{username}}!</h1>
    <p>Data generated at: {{cur_time}}!</p>
    <p>Here are your {{count}} random numbers:</p>
    <ul>
{{#random_numbers}}      <li>{{.}}</li>
{{/random_numbers}}    </ul>
  </body>
</html>
`;

function now() {
  return typeof performance !== 'undefined' && performance.now ? performance.now() : Date.now();
}

// --- template engine -----------------------------------------------------------------------------------

// compile turns a template into a tree of nodes: strings, {v: name, raw}, {s: name, body: [...]}.
function compile(src) {
  const root = [];
  const stack = [{ name: null, body: root }];
  const tag = /\{\{(\{?)\s*([#/]?)\s*([\w.]+)\s*\}?\}\}/g;
  let last = 0;
  let m;
  while ((m = tag.exec(src)) !== null) {
    const top = stack[stack.length - 1];
    if (m.index > last) top.body.push(src.slice(last, m.index));
    last = tag.lastIndex;
    const [, raw, kind, name] = m;
    if (kind === '#') {
      const node = { s: name, body: [] };
      top.body.push(node);
      stack.push({ name, body: node.body });
    } else if (kind === '/') {
      if (top.name !== name) throw new SyntaxError(`template: {{/${name}}} closes ${top.name || 'nothing'}`);
      stack.pop();
    } else {
      top.body.push({ v: name, raw: raw === '{' });
    }
  }
  if (stack.length !== 1) throw new SyntaxError(`template: {{#${stack[stack.length - 1].name}}} is not closed`);
  if (last < src.length) root.push(src.slice(last));
  return root;
}

const HTML_ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
}

function lookup(stack, name) {
  if (name === '.') return stack[stack.length - 1];
  for (let i = stack.length - 1; i >= 0; i--) {
    const ctx = stack[i];
    if (ctx !== null && typeof ctx === 'object' && name in ctx) return ctx[name];
  }
  return undefined;
}

function renderNodes(nodes, stack, out) {
  for (const node of nodes) {
    if (typeof node === 'string') {
      out.push(node);
    } else if (node.v !== undefined) {
      const value = lookup(stack, node.v);
      if (value !== undefined && value !== null) out.push(node.raw ? String(value) : escapeHtml(value));
    } else {
      const value = lookup(stack, node.s);
      if (Array.isArray(value)) {
        for (const item of value) {
          stack.push(item);
          renderNodes(node.body, stack, out);
          stack.pop();
        }
      } else if (value) {
        stack.push(value);
        renderNodes(node.body, stack, out);
        stack.pop();
      }
    }
  }
}

function render(compiled, view) {
  const out = [];
  renderNodes(compiled, [view], out);
  return out.join('');
}

const PAGE = compile(TEMPLATE);

// --- the function --------------------------------------------------------------------------------------

function seededRandom(seed) {
  let x = (Math.imul(seed | 0, 0x9e3779b1) ^ 0x6d2b79f5) >>> 0;
  if (x === 0) x = 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

function countOf(haystack, needle) {
  let n = 0;
  for (let at = haystack.indexOf(needle); at >= 0; at = haystack.indexOf(needle, at + needle.length)) n++;
  return n;
}

function main(params) {
  params = params || {};
  const username = params.username === undefined ? 'testname' : params.username;
  if (typeof username !== 'string' || username.length > 256) {
    return { error: 'dynamic-html: username must be a string of at most 256 characters' };
  }
  const len = params.random_len;
  if (typeof len !== 'number' || !Number.isInteger(len) || len < 0 || len > MAX_LEN) {
    return { error: `dynamic-html: random_len must be an integer in [0, ${MAX_LEN}], got ${JSON.stringify(len)}` };
  }
  let random = Math.random;
  if (params.seed !== undefined) {
    if (typeof params.seed !== 'number' || !Number.isInteger(params.seed) || params.seed < 0 || params.seed > 4294967295) {
      return { error: `dynamic-html: seed must be an integer in [0, 2^32), got ${JSON.stringify(params.seed)}` };
    }
    random = seededRandom(params.seed);
  }
  if (params.summary !== undefined && typeof params.summary !== 'boolean') {
    return { error: 'dynamic-html: summary must be a boolean' };
  }

  const t0 = now();
  const numbers = new Array(len);
  for (let i = 0; i < len; i++) numbers[i] = Math.floor(random() * 101);
  const html = render(PAGE, {
    username,
    cur_time: new Date().toLocaleString(),
    count: len,
    random_numbers: numbers,
  });
  const computeMs = now() - t0;
  const measurement = { compute_ms: computeMs };
  if (params.summary === true || html.length > MAX_INLINE) {
    return {
      summary: true,
      html_length: html.length,
      li_count: countOf(html, '<li>'),
      html_head: html.slice(0, 1024),
      html_tail: html.slice(-256),
      measurement,
    };
  }
  return { result: html, html_length: html.length, measurement };
}

if (typeof exports === 'object' && exports !== null) exports.main = main;
