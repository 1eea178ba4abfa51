// The oracle: Node's own HTTP server (llhttp, strict, every option at its default) reads each
// case, sent raw over a fresh loopback connection that the client half-closes after the
// bytes, and this records what the server made of it: the requests it handed to 'request'
// (method, target, version, raw header lines, body) and how the connection ended (a
// 'clientError' code, or a status Node answered itself, such as 400 for a missing Host or 417
// for an unknown expectation). Cases run in a few lanes, one server per lane and one case at a
// time per lane, so every server-side event belongs to the lane's current case.
//
//   node oracle.js CASES OUT        CASES: the generator's file; OUT: one JSON line per case
'use strict';
const fs = require('fs');
const http = require('http');
const net = require('net');
const crypto = require('crypto');

const LANES = 16;

function readCases(file) {
  const buf = fs.readFileSync(file);
  const cases = [];
  for (let off = 0; off < buf.length;) {
    const n = buf.readUInt32LE(off);
    cases.push(buf.subarray(off + 4, off + 4 + n));
    off += 4 + n;
  }
  return cases;
}

function digest(chunks) {
  return crypto.createHash('sha256').update(Buffer.concat(chunks)).digest('hex').slice(0, 16);
}

function lane(server, port, next, done) {
  let cur = null;
  server.on('connection', (socket) => {
    const c = cur;
    socket.on('close', () => {
      c.serverClosed = true;
      finish(c);
    });
  });
  server.on('request', (req, res) => {
    const c = cur;
    const rec = {m: req.method, u: req.url, v: req.httpVersion, h: req.rawHeaders, b: []};
    c.reqs.push(rec);
    req.on('data', (d) => rec.b.push(d));
    req.on('end', () => {
      rec.complete = true;
      res.writeHead(200, {'Content-Length': '0'});
      res.end();
    });
  });
  server.on('clientError', (err, socket) => {
    if (cur.error === null) cur.error = err.code || String(err);
    socket.destroy();
  });
  function finish(c) {
    if (!c.serverClosed || !c.clientClosed || c.reported) return;
    c.reported = true;
    const statuses = [];
    const text = Buffer.concat(c.response).toString('latin1');
    for (const m of text.matchAll(/HTTP\/1\.1 (\d{3}) /g)) statuses.push(Number(m[1]));
    done({
      i: c.i,
      reqs: c.reqs.map((r) => ({
        m: r.m, u: r.u, v: r.v, h: r.h, complete: !!r.complete,
        blen: Buffer.concat(r.b).length, b: digest(r.b)
      })),
      err: c.error,
      statuses: statuses.filter((s) => s >= 200),
    });
    run();
  }
  function run() {
    const item = next();
    if (item === null) {
      server.close();
      return;
    }
    const c = cur = {i: item.i, reqs: [], error: null, response: [], serverClosed: false,
                     clientClosed: false, reported: false};
    const sock = net.connect(port, '127.0.0.1');
    sock.on('connect', () => {
      sock.end(item.bytes);
    });
    sock.on('data', (d) => c.response.push(d));
    sock.on('error', () => {});
    sock.on('close', () => {
      c.clientClosed = true;
      finish(c);
    });
  }
  run();
}

function main() {
  const [casesFile, outFile] = process.argv.slice(2);
  const cases = readCases(casesFile);
  const results = new Array(cases.length);
  let nextIndex = 0;
  let finished = 0;
  const next = () => (nextIndex < cases.length ? {i: nextIndex, bytes: cases[nextIndex++]} : null);
  const done = (r) => {
    results[r.i] = r;
    if (++finished === cases.length) {
      fs.writeFileSync(outFile, results.map((x) => JSON.stringify(x)).join('\n') + '\n');
    }
  };
  for (let l = 0; l < LANES; ++l) {
    const server = http.createServer();
    server.listen(0, '127.0.0.1', () => lane(server, server.address().port, next, done));
  }
}

main();
