// The differential test of hylab's HTTP/1.1 request reader against Node's HTTP server
// (issue 18): generates the cases (gen.js, a fixed seed), has Node's server (oracle.js) and
// hylab's reader (http1_driver) read each, and holds hylab to these rules:
//
// - where Node refuses a connection's bytes after k requests, hylab reads at most those k
//   and refuses (or ends the connection) at or before the request Node refused;
// - where both read a request, they frame it the same: method, target, version, fields,
//   body (so it ends at the same byte: a different end shows as a different next request,
//   body or refusal);
// - hylab frames the bytes the same whether they arrive whole or in small pieces;
// - where Node reads a request that hylab refuses, hylab's reason must be in one of the
//   deliberate classes of docs/http.md (tests/unit/common/http1_harness.h), counted per
//   class and printed; a request after which hylab ends the connection (Upgrade) and Node,
//   having no upgrade handler, reads on, is counted in its own class.
//
// It exits 1 listing the first mismatches (case number, class, bytes escaped).
//
//   node run.js DRIVER WORKDIR [N [SEED]]
'use strict';
const fs = require('fs');
const path = require('path');
const {spawn} = require('child_process');

const [driver, workdir, nArg, seedArg] = process.argv.slice(2);
const N = Number(nArg || 100000);
const SEED = Number(seedArg || 18);

// The deliberate classes, by hylab's answer: kept in step with http1_harness.h.
const DELIBERATE = [
  ['method outside hylab\'s set (501)', 501, 'method '],
  ['transfer coding other than chunked (501)', 501, 'a transfer coding other than chunked'],
  ['HTTP version other than 1.0/1.1 (505)', 505, 'HTTP version '],
  ['protocol other than HTTP, or no version (400)', 400, 'a malformed HTTP version'],
  ['request line other than method SP target SP version (400)', 400, 'a malformed request line'],
  ['fragment or non-URL byte in the target (400)', 400, 'an invalid character in the request target'],
  ['target neither a path nor an http(s) URL (400)', 400, 'a request target that is neither'],
  ['Host missing or repeated (400)', 400, 'an HTTP/1.1 request without Host'],
  ['Host missing or repeated (400)', 400, 'more than one Host'],
  ['expectation other than 100-continue (417)', 417, 'expectation '],
  ['tab in a Content-Length or Transfer-Encoding value (400)', 400, 'a tab after the start'],
  ['Transfer-Encoding coding not a token (400)', 400, 'a Transfer-Encoding coding that is not a token'],
  ['chunk extension with an empty name or value (400)', 400, 'an empty chunk extension '],
  ['empty element in Transfer-Encoding (400)', 400, 'an empty element in Transfer-Encoding'],
  ['bare LF or CR before a request line (400)', 400, 'a bare LF before the request line'],
  ['bare LF or CR before a request line (400)', 400, 'a CR not followed by LF before the request line'],
  ['head, chunk extensions and trailers over 16 KiB together (431)', 431, 'request head, chunk extensions and trailers over the limit'],
];

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, {stdio: ['ignore', 'inherit', 'inherit']});
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}`))));
  });
}

const lines = (file) => fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0);
const hex = (s) => Buffer.from(s, 'latin1').toString('hex');
const text = (h) => Buffer.from(h, 'hex').toString('latin1');

function escaped(buf, max = 400) {
  let s = '';
  for (const b of buf.subarray(0, max)) {
    if (b === 0x0d) s += '\\r';
    else if (b === 0x0a) s += '\\n';
    else if (b === 0x5c) s += '\\\\';
    else if (b < 0x20 || b >= 0x7f) s += '\\x' + b.toString(16).padStart(2, '0');
    else s += String.fromCharCode(b);
  }
  return buf.length > max ? s + `... (${buf.length} bytes)` : s;
}

function deliberateClass(st, why) {
  for (const [name, status, prefix] of DELIBERATE) {
    if (status === st && why.startsWith(prefix)) return name;
  }
  return null;
}

// Whether Node's request and hylab's message are the same request; null if so, else why not.
function sameRequest(n, h, fields) {
  if (n.m !== text(h.m)) return `method ${JSON.stringify(n.m)} vs ${JSON.stringify(text(h.m))}`;
  if (hex(n.u) !== h.u) return `target ${JSON.stringify(n.u)} vs ${JSON.stringify(text(h.u))}`;
  if (n.v !== (h.v === 11 ? '1.1' : '1.0')) return `version ${n.v} vs ${h.v}`;
  if (Buffer.from(h.b, 'hex').length !== n.blen || n.b !== require('crypto').createHash('sha256').update(Buffer.from(h.b, 'hex')).digest('hex').slice(0, 16))
    return `body of ${n.blen} bytes vs ${h.b.length / 2}`;
  if (n.h.length !== fields.length) return `${n.h.length / 2} fields vs ${fields.length / 2}`;
  for (let i = 0; i < fields.length; i += 2) {
    if (hex(n.h[i]) !== fields[i]) return `field name ${JSON.stringify(n.h[i])} vs ${JSON.stringify(text(fields[i]))}`;
    // Node decodes values as text; compare where the value is ASCII.
    const v = fields[i + 1];
    if (/^([0-7][0-9a-f])*$/.test(v) && hex(n.h[i + 1]) !== v)
      return `field ${n.h[i]} value ${JSON.stringify(n.h[i + 1])} vs ${JSON.stringify(text(v))}`;
  }
  return null;
}

async function main() {
  fs.mkdirSync(workdir, {recursive: true});
  const cases = path.join(workdir, 'cases.bin');
  const classesFile = path.join(workdir, 'classes.txt');
  const nodeOut = path.join(workdir, 'node.jsonl');
  const hylabOut = path.join(workdir, 'hylab.jsonl');
  const t0 = Date.now();
  await run(process.execPath, [path.join(__dirname, 'gen.js'), String(N), String(SEED), cases, classesFile]);
  await Promise.all([
    run(process.execPath, [path.join(__dirname, 'oracle.js'), cases, nodeOut]),
    run(driver, [cases, hylabOut]),
  ]);
  const buf = fs.readFileSync(cases);
  const wires = [];
  for (let off = 0; off < buf.length;) {
    const n = buf.readUInt32LE(off);
    wires.push(buf.subarray(off + 4, off + 4 + n));
    off += 4 + n;
  }
  const classes = lines(classesFile);
  const nodes = lines(nodeOut).map((l) => JSON.parse(l));
  const hylabs = lines(hylabOut).map((l) => JSON.parse(l));
  if (nodes.length !== N || hylabs.length !== N || classes.length !== N || wires.length !== N)
    throw new Error(`expected ${N} results, got node ${nodes.length}, hylab ${hylabs.length}`);

  const mismatches = [];
  const tally = {bothAccept: 0, bothReject: 0, deliberate: {}, perClass: {}};
  for (let i = 0; i < N; ++i) {
    const n = nodes[i];
    const h = hylabs[i];
    const cls = classes[i];
    const pc = tally.perClass[cls] = tally.perClass[cls] || {cases: 0, nodeAccept: 0, agree: 0, deliberate: 0};
    pc.cases++;
    const fail = (why) => mismatches.push({i, cls, why, n, h});
    if (!h.split_same) {
      fail('hylab frames the bytes otherwise when they arrive in pieces');
      continue;
    }
    const nreqs = n.reqs.filter((r) => r.complete && r !== undefined);
    const nodeRefused = n.err !== null || n.statuses.some((s) => s !== 200) || nreqs.length < n.reqs.length;
    if (!nodeRefused) pc.nodeAccept++;
    const k = nreqs.length;
    const j = h.msgs.length;
    const why = text(h.why);
    let framed = true;
    for (let m = 0; m < Math.min(j, k); ++m) {
      const d = sameRequest(nreqs[m], h.msgs[m], h.h[m]);
      if (d !== null) {
        fail(`request ${m + 1} read otherwise: ${d}`);
        framed = false;
        break;
      }
    }
    if (!framed) continue;
    if (j > k) {
      fail(`hylab read ${j} request(s), Node ${k}` + (nodeRefused ? ` and refused (${n.err || n.statuses})` : ''));
      continue;
    }
    const hylabRefused = h.end === 'failed' || h.eof_failed;
    const hylabStopped = hylabRefused || h.end === 'closed';
    if (j === k) {
      if (nodeRefused && !hylabStopped) {
        fail(`Node refuses (${n.err || n.statuses}), hylab reads it (${h.end})`);
        continue;
      }
      if (!nodeRefused && hylabRefused) {
        const c = deliberateClass(h.st, why);
        if (c === null) {
          fail(`Node reads it, hylab refuses (${h.st} ${why}) in no documented class`);
          continue;
        }
        tally.deliberate[c] = (tally.deliberate[c] || 0) + 1;
        pc.deliberate++;
        continue;
      }
      if (nodeRefused) tally.bothReject++;
      else tally.bothAccept++;
      pc.agree++;
      continue;
    }
    // j < k: hylab stopped before a request Node read.
    if (h.end === 'closed') {
      const last = h.h[j - 1] || [];
      const named = (n) => last.filter((f, idx) => idx % 2 === 0 && text(f).toLowerCase() === n);
      const close = last.some((f, idx) => idx % 2 === 1 && text(last[idx - 1]).toLowerCase() === 'connection' &&
                                          text(f).toLowerCase().split(',').some((t) => t.trim() === 'close'));
      let c = null;
      if (named('upgrade').length > 0) c = 'Upgrade ends the connection (hylab closes after the request)';
      else if (close) c = 'Connection: close ends it even beside keep-alive (HTTP/1.0)';
      if (c === null) {
        fail(`hylab ended the connection after ${j} request(s), Node read ${k}`);
        continue;
      }
      tally.deliberate[c] = (tally.deliberate[c] || 0) + 1;
      pc.deliberate++;
      continue;
    }
    const c = hylabRefused ? deliberateClass(h.st, why) : null;
    if (c === null) {
      fail(`hylab stops after ${j} request(s) (${h.end} ${h.st} ${why}), Node reads ${k}`);
      continue;
    }
    tally.deliberate[c] = (tally.deliberate[c] || 0) + 1;
    pc.deliberate++;
  }

  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  console.log(`http1 differential: ${N} cases (seed ${SEED}) in ${secs} s: ` +
              `${tally.bothAccept} read alike by both, ${tally.bothReject} refused by both, ` +
              `${Object.values(tally.deliberate).reduce((a, b) => a + b, 0)} refused by hylab only ` +
              `(deliberate), ${mismatches.length} mismatches`);
  console.log('hylab stricter, by deliberate class (docs/http.md):');
  for (const [c, count] of Object.entries(tally.deliberate).sort()) console.log(`  ${String(count).padStart(6)}  ${c}`);
  console.log('by generator class: cases / Node accepts / agree / hylab stricter (deliberate)');
  for (const [c, v] of Object.entries(tally.perClass).sort())
    console.log(`  ${c.padEnd(22)} ${String(v.cases).padStart(6)} ${String(v.nodeAccept).padStart(6)} ${String(v.agree).padStart(6)} ${String(v.deliberate).padStart(6)}`);
  if (mismatches.length > 0) {
    const kinds = {};
    for (const m of mismatches) {
      const k = `[${m.cls}] ${m.why.replace(/\d+/g, 'N').slice(0, 120)}`;
      kinds[k] = (kinds[k] || 0) + 1;
    }
    console.log(`\nMISMATCHES by kind:`);
    for (const [k, c] of Object.entries(kinds).sort((a, b) => b[1] - a[1])) console.log(`  ${String(c).padStart(6)}  ${k}`);
    console.log(`\nFIRST MISMATCHES (of ${mismatches.length}; two of each kind at most):`);
    const shown = {};
    const first = mismatches.filter((m) => {
      const k = `[${m.cls}] ${m.why.replace(/\d+/g, 'N').slice(0, 120)}`;
      shown[k] = (shown[k] || 0) + 1;
      return shown[k] <= 2;
    });
    for (const m of first.slice(0, 30)) {
      console.log(`case ${m.i} [${m.cls}]: ${m.why}\n  bytes: ${escaped(wires[m.i])}\n` +
                  `  node: ${JSON.stringify({reqs: m.n.reqs.map((r) => ({m: r.m, u: r.u, complete: r.complete, blen: r.blen})), err: m.n.err, statuses: m.n.statuses})}\n` +
                  `  hylab: ${m.h.msgs.length} request(s), ${m.h.end}${m.h.eof_failed ? ' (eof failed)' : ''} ${m.h.st} ${text(m.h.why)}`);
    }
    process.exit(1);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
