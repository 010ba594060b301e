// The model loader against a real HTTP server (node has no Cache API: the cache path is tested in the browser).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { AbortError, IntegrityError, NetworkError } from '../../src/errors.js';
import { fetchModel, sha256Hex } from '../../src/loader.js';

const body = randomBytes(3_000_123);
const sha = createHash('sha256').update(body).digest('hex');
let server;
let base;

before(async () => {
  server = createServer((req, res) => {
    if (req.url === '/model.bin') res.writeHead(200, { 'content-length': body.length }).end(body);
    else if (req.url === '/chunked.bin') {
      res.writeHead(200); // no length: the loader grows its buffer
      for (let i = 0; i < body.length; i += 100_000) res.write(body.subarray(i, i + 100_000));
      res.end();
    } else if (req.url === '/gzip.bin') {
      const z = gzipSync(body);
      res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': z.length }).end(z);
    } else if (req.url === '/slow.bin') {
      res.writeHead(200, { 'content-length': body.length });
      res.write(body.subarray(0, 100_000)); // then stall
    } else if (req.url === '/cut.bin') {
      res.writeHead(200, { 'content-length': body.length });
      res.write(body.subarray(0, 100_000), () => res.destroy());
    } else res.writeHead(404).end('nope');
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${server.address().port}`;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

test('streams with monotonic progress up to the file size and checks the hash', async () => {
  const events = [];
  const r = await fetchModel({ url: `${base}/model.bin`, sha256: sha, onProgress: (p) => events.push(p) });
  assert.ok(Buffer.from(r.bytes).equals(body));
  assert.deepEqual([r.fromCache, r.cached], [false, false]);
  const dl = events.filter((e) => e.phase === 'download');
  assert.ok(dl.every((e, i) => i === 0 || e.loaded >= dl[i - 1].loaded));
  assert.deepEqual([dl.at(-1).loaded, dl.at(-1).total], [body.length, body.length]);
  assert.ok(events.some((e) => e.phase === 'verify'));
});

test('no Content-Length, and a compressed response, still give the exact bytes', async () => {
  const a = await fetchModel({ url: `${base}/chunked.bin`, sha256: sha });
  assert.equal(a.bytes.length, body.length);
  const events = [];
  const b = await fetchModel({ url: `${base}/gzip.bin`, sha256: sha, bytes: body.length, onProgress: (p) => events.push(p) });
  assert.equal(b.bytes.length, body.length);
  assert.equal(events.filter((e) => e.phase === 'download').at(-1).total, body.length, 'total from the expected size, not the compressed length');
});

test('a wrong hash is an IntegrityError naming both hashes', async () => {
  const wrong = '0'.repeat(64);
  await assert.rejects(fetchModel({ url: `${base}/model.bin`, sha256: wrong }), (e) => e instanceof IntegrityError && e.expected === wrong && e.actual === sha);
});

test('HTTP and network failures are NetworkErrors with the status', async () => {
  await assert.rejects(fetchModel({ url: `${base}/missing.bin` }), (e) => e instanceof NetworkError && e.status === 404);
  await assert.rejects(fetchModel({ url: 'http://127.0.0.1:9/none.bin' }), (e) => e instanceof NetworkError && e.status === 0);
  await assert.rejects(fetchModel({ url: `${base}/cut.bin` }), (e) => e instanceof NetworkError);
});

test('abort before and during the download is an AbortError', async () => {
  await assert.rejects(fetchModel({ url: `${base}/model.bin`, signal: AbortSignal.abort() }), AbortError);
  const ac = new AbortController();
  const p = fetchModel({ url: `${base}/slow.bin`, signal: ac.signal, onProgress: (e) => e.loaded > 0 && ac.abort() });
  await assert.rejects(p, AbortError);
});

test('sha256Hex matches node', async () => {
  assert.equal(await sha256Hex(body), sha);
  assert.equal(await sha256Hex(new Uint8Array(0)), createHash('sha256').digest('hex'));
});
