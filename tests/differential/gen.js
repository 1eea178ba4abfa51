// The generator: deterministic (a seeded xorshift), it writes N cases, each the bytes of one
// connection, in classes: requests valid by RFC 9112's grammar (methods, targets, fields,
// Content-Length and chunked bodies with extensions and trailers, pipelines), the framing
// attacks of issue 18 (Transfer-Encoding not ending in chunked, CL+TE, duplicate or
// non-numeric Content-Length, obs-fold, bare LF/CR, chunk extensions long, quoted or invalid,
// trailers many or forbidden, NUL and control bytes, spaces before the colon, odd methods and
// versions, pipelines, Expect), and random byte mutations of the valid ones.
//
//   node gen.js N SEED CASES CLASSES    CASES: u32le length + bytes per case;
//                                       CLASSES: one class name per line, in case order
'use strict';
const fs = require('fs');

function rng(seed) {
  let x = (seed >>> 0) || 0x9e3779b9;
  const next = () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
  return {
    int: (n) => next() % n,
    pick: (a) => a[next() % a.length],
    chance: (p) => next() / 4294967296 < p,
  };
}

function makeGenerator(r) {
  const tokenChars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_';
  const word = (min, max) => {
    let s = '';
    for (let n = min + r.int(max - min + 1); n > 0; --n) s += r.pick(tokenChars);
    return s;
  };
  const pathChars = tokenChars + "/.~!$&'()*+,;=:@%";
  const target = () => {
    const k = r.int(10);
    if (k === 0) return 'http://' + word(1, 8) + '.example' + (r.chance(0.5) ? ':8080' : '') + '/' + word(0, 6);
    let s = '/';
    for (let n = r.int(24); n > 0; --n) s += r.pick(pathChars);
    if (r.chance(0.3)) s += '?' + word(1, 5) + '=' + word(0, 8);
    return s;
  };
  const body = (n) => {
    let s = '';
    for (; n > 0; --n) s += String.fromCharCode(r.int(256));
    return s;
  };
  const ows = () => r.pick(['', '', ' ', '  ', '\t', ' \t']);
  const fieldValue = () => {
    let s = '';
    const chars = tokenChars + ' ,;="/()<>?@[]{}\t';
    for (let n = r.int(20); n > 0; --n) s += r.pick(chars);
    if (r.chance(0.05)) s += String.fromCharCode(0x80 + r.int(128));  // obs-text
    return s.trim();
  };
  const extraFields = () => {
    const out = [];
    for (let n = r.int(4); n > 0; --n) {
      out.push(r.pick(['X-' + word(1, 8), 'Accept', 'User-Agent', 'Cookie', 'Authorization', 'Via',
                       'Content-Type', 'Cache-Control']) + ':' + ows() + fieldValue() + ows());
    }
    return out;
  };
  const chunkExt = () => {
    if (!r.chance(0.3)) return '';
    let s = '';
    for (let n = 1 + r.int(2); n > 0; --n) {
      s += ';' + word(1, 6);
      const v = r.int(3);
      if (v === 1) s += '=' + word(1, 6);
      if (v === 2) s += '="' + word(0, 6).replace(/_/g, ' ') + (r.chance(0.2) ? '\\"' : '') + '"';
    }
    return s;
  };
  const chunked = (data) => {
    let s = '';
    for (let off = 0; off < data.length;) {
      const n = Math.min(data.length - off, 1 + r.int(40));
      s += (r.chance(0.2) ? n.toString(16).toUpperCase() : n.toString(16)) + chunkExt() + '\r\n' +
           data.substr(off, n) + '\r\n';
      off += n;
    }
    s += (r.chance(0.1) ? '000' : '0') + chunkExt() + '\r\n';
    for (let n = r.chance(0.3) ? 1 + r.int(3) : 0; n > 0; --n) s += 'X-T-' + word(1, 5) + ': ' + word(0, 8) + '\r\n';
    return s + '\r\n';
  };
  // One valid request: {head lines, body part} so classes can alter either.
  const request = (opts = {}) => {
    const method = opts.method || r.pick(['GET', 'GET', 'POST', 'POST', 'PUT', 'DELETE', 'HEAD', 'PATCH', 'OPTIONS']);
    const version = opts.version || (r.chance(0.9) ? 'HTTP/1.1' : 'HTTP/1.0');
    const lines = [method + ' ' + target() + ' ' + version];
    if (version === 'HTTP/1.1' || r.chance(0.5)) lines.push(r.pick(['Host', 'host', 'HOST']) + ':' + ows() + word(1, 10) + '.example' + ows());
    lines.push(...extraFields());
    if (version === 'HTTP/1.0' && r.chance(0.5)) lines.push('Connection: keep-alive');
    let tail = '';
    const kind = opts.framing || r.pick(['none', 'cl', 'cl', 'chunked']);
    const data = body(r.int(120));
    if (kind === 'cl') {
      lines.push(r.pick(['Content-Length', 'content-length']) + ':' + ows() + data.length + ows());
      tail = data;
    } else if (kind === 'chunked' && version === 'HTTP/1.1') {
      lines.push(r.pick(['Transfer-Encoding', 'transfer-encoding']) + ':' + ows() + r.pick(['chunked', 'Chunked']) + ows());
      tail = chunked(data);
    }
    for (let i = lines.length - 1; i > 1; --i) {  // shuffle the fields, Host among them
      const j = 1 + r.int(i);
      [lines[i], lines[j]] = [lines[j], lines[i]];
    }
    return {lines, tail};
  };
  const wire = (q) => q.lines.join('\r\n') + '\r\n\r\n' + q.tail;
  const withField = (q, f) => {
    q.lines.splice(1 + r.int(q.lines.length), 0, f);
    return q;
  };
  const bodyless = () => request({framing: 'none', version: 'HTTP/1.1'});

  const interesting = ['\r', '\n', '\r\n', ' ', '\t', '\0', ':', ',', ';', '"', '\x7f', '\x01', '\x0b',
                       '\x0c', '\x1b', '\x80', '\xff', '=', '\\', '0', 'a', '\r\n\r\n', '#', '%'];
  const mutate = (s) => {
    for (let n = 1 + r.int(2); n > 0; --n) {
      const at = r.int(s.length + 1);
      const k = r.int(5);
      if (k === 0) s = s.slice(0, at) + r.pick(interesting) + s.slice(at);
      else if (k === 1) s = s.slice(0, at) + s.slice(at + 1);
      else if (k === 2) s = s.slice(0, at) + String.fromCharCode(r.int(256)) + s.slice(at + 1);
      else if (k === 3) s = s.slice(0, at) + r.pick(interesting) + s.slice(at + 1);
      else s = s.slice(0, at);  // truncated
    }
    return s;
  };

  const classes = {
    valid: () => wire(request()),
    'valid-pipeline': () => {
      let s = '';
      for (let n = 2 + r.int(3); n > 0; --n) s += (r.chance(0.1) ? '\r\n' : '') + wire(request({version: 'HTTP/1.1'}));
      return s;
    },
    'te-not-chunked': () => {
      const q = bodyless();
      withField(q, 'Transfer-Encoding: ' + r.pick(['xchunked', 'gzip', 'identity', 'chunked, gzip',
        'gzip, chunked', 'chunked, chunked', 'chunked;q=1', 'chunkedx', 'chunk', '"chunked"',
        'chunked,', ', chunked', 'deflate,chunked', 'chunked , identity', 'x-chunked', 'compress']));
      if (r.chance(0.3)) withField(q, 'Transfer-Encoding: ' + r.pick(['chunked', 'gzip', 'identity']));
      return wire(q) + r.pick(['5\r\nhello\r\n0\r\n\r\n', '0\r\n\r\n', 'hello', '']) +
             (r.chance(0.5) ? wire(bodyless()) : '');
    },
    'cl-te': () => {
      const q = bodyless();
      withField(q, 'Transfer-Encoding: chunked');
      withField(q, 'Content-Length: ' + r.pick(['0', '5', '3', '11']));
      return wire(q) + '5\r\nhello\r\n0\r\n\r\n' + (r.chance(0.5) ? wire(bodyless()) : '');
    },
    'cl-bad': () => {
      const q = bodyless();
      const v = r.pick(['5, 5', '5,5', '+5', '-5', ' 5 ', '0x5', '5a', '', '5 5', '05', '5.0',
        '99999999999999999999999', '18446744073709551616', '\t5', '5;', '1e1', '٥']);
      withField(q, 'Content-Length: ' + v);
      if (r.chance(0.4)) withField(q, 'Content-Length: ' + r.pick(['5', '6', v]));
      return wire(q) + 'hello' + (r.chance(0.5) ? wire(bodyless()) : '');
    },
    'cl-dup': () => {
      const q = bodyless();
      const a = r.pick(['5', '0', '6']);
      withField(q, 'Content-Length: ' + a);
      withField(q, r.pick(['Content-Length', 'content-length']) + ': ' + r.pick([a, '5', '0']));
      return wire(q) + 'hello' + wire(bodyless());
    },
    'obs-fold': () => {
      const q = bodyless();
      const i = 1 + r.int(q.lines.length - 1);
      q.lines.splice(i + 1, 0, r.pick([' ', '\t', '  ']) + word(1, 6));
      if (r.chance(0.3)) q.lines.splice(1 + r.int(q.lines.length - 1), 0, ' Transfer-Encoding: chunked');
      return wire(q) + (r.chance(0.5) ? '0\r\n\r\n' : '');
    },
    'bare-lf-cr': () => {
      const s = wire(request());
      const crlfs = [];
      for (let i = s.indexOf('\r\n'); i >= 0; i = s.indexOf('\r\n', i + 1)) crlfs.push(i);
      const at = r.pick(crlfs);
      return s.slice(0, at) + r.pick(['\n', '\r', '\r\r\n', '\n\r', '\r \n']) + s.slice(at + 2);
    },
    'chunk-ext': () => {
      const q = bodyless();
      withField(q, 'Transfer-Encoding: chunked');
      const ext = r.pick([';' + 'a'.repeat(100 + r.int(3000)), ';a="' + 'b'.repeat(r.int(2000)) + '"',
        ';a="x\\"y"', ';a="x"y', ';a="unterminated', ' ;a=b', '; a=b', ';a =b', ';a= b', ';', ';=',
        ';a=', ';a=b;', ';a=b c', ';a="\x7f"', ';a="\x01"', ';a=\x80', ';a="\t"', '\t', ' ',
        ';a=b;c="d";e', ';\x00']);
      return wire(q) + '5' + ext + '\r\nhello\r\n0\r\n\r\n' + (r.chance(0.5) ? wire(bodyless()) : '');
    },
    trailers: () => {
      const q = bodyless();
      withField(q, 'Transfer-Encoding: chunked');
      let t = '';
      const k = r.int(4);
      if (k === 0) for (let n = 20 + r.int(200); n > 0; --n) t += 'X-T' + n + ': v\r\n';
      else if (k === 1) t += r.pick(['Content-Length: 5', 'Transfer-Encoding: chunked', 'Host: evil',
                                     'Authorization: Bearer x', 'Trailer: X', 'Content-Length: 0']) + '\r\n';
      else if (k === 2) t += r.pick([' folded', 'NoColon', 'Sp ace: x', 'X : y', ': empty', 'X: \x00',
                                     'X: a\rb', 'X: \x7f', 'X-\x80: y']) + '\r\n';
      else t += 'X-Big: ' + 'v'.repeat(1000 + r.int(20000)) + '\r\n';
      return wire(q) + '5\r\nhello\r\n0\r\n' + t + '\r\n' + (r.chance(0.5) ? wire(bodyless()) : '');
    },
    'control-bytes': () => {
      const s = wire(request());
      const at = r.int(s.length);
      return s.slice(0, at) + r.pick(['\0', '\x01', '\x7f', '\x1f', '\x0b', '\x0c', '\x08']) + s.slice(at);
    },
    'space-before-colon': () => {
      const q = bodyless();
      const name = r.pick(['Host', 'Content-Length', 'Transfer-Encoding', 'X-A']);
      withField(q, name + r.pick([' ', '\t', '  ']) + ': ' + (name === 'Content-Length' ? '5' : name === 'Transfer-Encoding' ? 'chunked' : 'x'));
      return wire(q) + (r.chance(0.5) ? '5\r\nhello\r\n0\r\n\r\n' : 'hello');
    },
    'odd-method-version': () => {
      const method = r.pick(['get', 'Get', 'BREW', 'CONNECT', 'M-SEARCH', 'PROPFIND', 'PURGE', 'SEARCH',
        'GET\t', 'G ET', 'GE', 'GETT', 'POST ', '', 'QUERY', 'LINK', 'PRI', 'TRACE', 'OPTIONS', 'G\x00T']);
      const version = r.pick(['HTTP/1.1', 'HTTP/1.0', 'HTTP/1.2', 'HTTP/2.0', 'HTTP/0.9', 'HTTP/3.0',
        'HTTP/1.1 ', 'http/1.1', 'HTTP/11', 'HTTP/1', 'HTTP/1.10', 'HTTP/ 1.1', 'RTSP/1.0', 'ICE/1.0', '',
        'HTTP/9.9', 'HTTP/1.1\t']);
      const t = r.pick(['/', '*', 'example.com:443', 'http://a/', '/a b', '//', '/#f', 'ftp://x/', '/\x80']);
      return method + ' ' + t + (version ? ' ' + version : '') + '\r\nHost: a\r\n\r\n' +
             (r.chance(0.3) ? wire(bodyless()) : '');
    },
    'request-line-spacing': () => {
      const t = target();
      return r.pick(['GET  ' + t + ' HTTP/1.1', 'GET ' + t + '  HTTP/1.1', ' GET ' + t + ' HTTP/1.1',
                     'GET\t' + t + ' HTTP/1.1', 'GET ' + t + '\tHTTP/1.1', 'GET ' + t + ' HTTP/1.1 ']) +
             '\r\nHost: a\r\n\r\n';
    },
    pipeline: () => {
      let s = '';
      for (let n = 2 + r.int(4); n > 0; --n) {
        const q = request();
        if (r.chance(0.2)) withField(q, r.pick(['Connection: close', 'Connection: keep-alive', 'Connection: upgrade\r\nUpgrade: h2c']));
        s += wire(q);
        if (r.chance(0.15)) s += r.pick(['\r\n', '\r\n\r\n', '\n', ' ', 'x']);
      }
      return s;
    },
    expect: () => {
      const q = request({framing: 'cl', version: r.chance(0.8) ? 'HTTP/1.1' : 'HTTP/1.0'});
      withField(q, 'Expect: ' + r.pick(['100-continue', '100-Continue', 'tea', '100-continue, x', '', '200-ok', ' 100-continue']));
      return wire(q);
    },
    'no-host': () => {
      const q = request();
      q.lines = q.lines.filter((l) => !/^host:/i.test(l));
      if (r.chance(0.3)) withField(q, 'Host: a');
      if (r.chance(0.3)) withField(q, 'Host: ' + r.pick(['a', 'b', '']));
      return wire(q);
    },
    'long-head': () => {
      const q = bodyless();
      withField(q, 'X-Long: ' + 'a'.repeat(r.pick([100, 4000, 8000, 20000, 40000])));
      return wire(q);
    },
    mutation: () => {
      let s = wire(request());
      if (r.chance(0.3)) s += wire(request());
      return mutate(s);
    },
  };
  const names = Object.keys(classes);
  // Weights: a third valid or valid-then-mutated; the rest spread over the attack classes.
  return () => {
    const k = r.int(100);
    const name = k < 12 ? 'valid' : k < 18 ? 'valid-pipeline' : k < 40 ? 'mutation' : names[r.int(names.length)];
    return {name, bytes: Buffer.from(classes[name](), 'latin1')};
  };
}

function main() {
  const [n, seed, casesFile, classesFile] = process.argv.slice(2);
  const r = rng(Number(seed));
  const gen = makeGenerator(r);
  const parts = [];
  const names = [];
  for (let i = 0; i < Number(n); ++i) {
    const c = gen();
    const len = Buffer.alloc(4);
    len.writeUInt32LE(c.bytes.length);
    parts.push(len, c.bytes);
    names.push(c.name);
  }
  fs.writeFileSync(casesFile, Buffer.concat(parts));
  fs.writeFileSync(classesFile, names.join('\n') + '\n');
}

main();
