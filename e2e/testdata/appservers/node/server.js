// The conformance echo app on Node.js's own http module (no npm packages).
// Usage: node server.js PORT
'use strict';
const http = require('http');
const crypto = require('crypto');

const NAME = 'node';
const FIXED = '0123456789abcdef'.repeat(64);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function echo(req, res, delay) {
  if (delay) await sleep(delay);
  const hash = crypto.createHash('sha256');
  let len = 0;
  for await (const chunk of req) { hash.update(chunk); len += chunk.length; }
  const headers = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
  const trailers = [];
  for (let i = 0; i < req.rawTrailers.length; i += 2) trailers.push([req.rawTrailers[i], req.rawTrailers[i + 1]]);
  const body = JSON.stringify({
    server: NAME, method: req.method, target: req.url, headers,
    body_len: len, body_sha256: hash.digest('hex'), trailers,
  });
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'X-Backend': NAME });
  res.end(body);
}

const server = http.createServer(async (req, res) => {
  const path = req.url.split('?')[0];
  switch (path) {
    case '/healthz':
      res.end('ok');
      return;
    case '/echo':
      return echo(req, res, 0);
    case '/slow':
      return echo(req, res, 300);
    case '/fixed':
      res.writeHead(200, [
        ['Content-Type', 'text/plain'], ['Content-Length', String(FIXED.length)], ['X-Backend', NAME],
        ['Set-Cookie', 'a=1; Path=/'], ['Set-Cookie', 'b=2; Path=/'],
      ]);
      res.end(req.method === 'HEAD' ? undefined : FIXED);
      return;
    case '/empty':
      res.writeHead(204, { 'X-Backend': NAME, 'X-Empty': '1' });
      res.end();
      return;
    case '/notmod':
      if (req.headers['if-none-match'] === '"v1"') {
        res.writeHead(304, { ETag: '"v1"', 'X-Backend': NAME });
        res.end();
      } else {
        res.writeHead(200, { ETag: '"v1"', 'Content-Type': 'text/plain', 'Content-Length': '6', 'X-Backend': NAME });
        res.end('fresh\n');
      }
      return;
    case '/trailers': {
      res.writeHead(200, { 'Content-Type': 'text/plain', Trailer: 'X-Checksum', 'X-Backend': NAME });
      const hash = crypto.createHash('sha256');
      for (let i = 0; i < 3; i++) {
        const part = `chunk-${i}\n`;
        hash.update(part);
        res.write(part);
        await sleep(20);
      }
      res.addTrailers({ 'X-Checksum': hash.digest('hex') });
      res.end();
      return;
    }
    case '/stream':
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      for (let i = 0; i < 4; i++) {
        if (i > 0) await sleep(250);
        res.write(`data: event ${i}\n\n`);
      }
      res.end();
      return;
    default:
      res.writeHead(404, { 'X-Backend': NAME });
      res.end('not found\n');
  }
});

// The WebSocket echo, by hand: the handshake, then unfragmented frames
// echoed with their opcode; a Close is answered with a Close.
server.on('upgrade', (req, socket, head) => {
  const key = req.headers['sec-websocket-key'];
  if (req.url.split('?')[0] !== '/ws' || !key || (req.headers.upgrade || '').toLowerCase() !== 'websocket') {
    socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${accept}\r\n\r\n`);
  let buf = head && head.length ? Buffer.from(head) : Buffer.alloc(0);
  const frame = (opcode, payload) => {
    let hdr;
    if (payload.length < 126) hdr = Buffer.from([0x80 | opcode, payload.length]);
    else if (payload.length < 65536) { hdr = Buffer.alloc(4); hdr[0] = 0x80 | opcode; hdr[1] = 126; hdr.writeUInt16BE(payload.length, 2); }
    else { hdr = Buffer.alloc(10); hdr[0] = 0x80 | opcode; hdr[1] = 127; hdr.writeBigUInt64BE(BigInt(payload.length), 2); }
    return Buffer.concat([hdr, payload]);
  };
  const drain = () => {
    for (;;) {
      if (buf.length < 2) return;
      const opcode = buf[0] & 0x0f;
      const masked = (buf[1] & 0x80) !== 0;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
      const maskOff = off;
      if (masked) off += 4;
      if (buf.length < off + len) return;
      const payload = Buffer.from(buf.subarray(off, off + len));
      if (masked) for (let i = 0; i < len; i++) payload[i] ^= buf[maskOff + (i % 4)];
      buf = buf.subarray(off + len);
      if (opcode === 8) { socket.end(frame(8, payload)); return; }
      if (opcode === 9) { socket.write(frame(10, payload)); continue; }
      if (opcode === 1 || opcode === 2) socket.write(frame(opcode, payload));
    }
  };
  socket.on('data', (d) => { buf = Buffer.concat([buf, d]); drain(); });
  socket.on('error', () => {});
  drain();
});

server.keepAliveTimeout = 30000;
server.listen(Number(process.argv[2]), '127.0.0.1');
