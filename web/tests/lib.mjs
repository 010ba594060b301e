// Shared pieces of the browser tests: a static server for the repo that logs every request, and
// Debian's Chromium driven by playwright-core with WebGPU enabled (or not).
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFile, stat } from 'node:fs/promises';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const root = normalize(join(fileURLToPath(import.meta.url), '../../..'));
const types = { '.html': 'text/html', '.css': 'text/css', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.png': 'image/png' };

/**
 * Serve `root` on loopback with no special headers (what a plain static host does; `headers` adds some,
 * e.g. CORS for a second origin playing a CDN).
 * `routes` maps a path to `(req, res) => void` for test-only responses. Every request is logged
 * in `server.log` as `{ method, path, headers, body }`.
 */
export async function serve(routes = {}, dir = root, headers = {}) {
  const log = [];
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const url = new URL(req.url, 'http://x');
    log.push({ method: req.method, path: url.pathname, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
    if (routes[url.pathname]) return routes[url.pathname](req, res);
    const path = normalize(join(dir, decodeURIComponent(url.pathname)));
    if (!path.startsWith(dir)) return res.writeHead(403).end();
    try {
      const s = await stat(path);
      if (!s.isFile()) throw new Error('not a file');
      res.writeHead(200, { ...headers, 'content-type': types[extname(path)] ?? 'application/octet-stream', 'content-length': s.size });
      res.end(await readFile(path));
    } catch {
      res.writeHead(404, headers).end();
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  server.origin = `http://127.0.0.1:${server.address().port}`;
  server.log = log;
  return server;
}

/**
 * A stand-in for the host of a model's pinned download (PyPI's file host), which this machine cannot
 * reach: a local HTTPS server with a throwaway certificate that serves `files` (URL -> bytes) with
 * the CORS header the real host sends. Launch Chromium with `args` to send the host's traffic to it.
 */
export async function pinnedHost(files) {
  const hosts = new Set(Object.keys(files).map((u) => new URL(u).hostname));
  if (hosts.size !== 1) throw new Error('pinnedHost serves one host');
  const [host] = hosts;
  const dir = mkdtempSync(join(tmpdir(), 'pmg-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${host}`,
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  const byPath = Object.fromEntries(Object.entries(files).map(([u, b]) => [new URL(u).pathname, b]));
  const requests = [];
  const server = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => {
    requests.push({ path: req.url, method: req.method, headers: req.headers });
    const body = byPath[req.url];
    if (!body) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/zip', 'content-length': body.length, 'access-control-allow-origin': '*' }).end(body);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    requests,
    args: [`--host-resolver-rules=MAP ${host}:443 127.0.0.1:${server.address().port}`, '--ignore-certificate-errors'],
    close: () => server.close(),
  };
}

/** The default LLM's pinned archive (kept under models/ by scripts/fetch-models.sh), by its URL. */
export async function defaultLlmArchive() {
  const { models, defaultLlm } = await import('../src/models.js');
  const url = models[defaultLlm].url;
  return { [url]: await readFile(join(root, 'models', new URL(url).pathname.split('/').pop())) };
}

/** Headless Chromium; `webgpu: false` leaves WebGPU off (navigator.gpu gives no adapter). */
export function launch({ webgpu = true, args = [] } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    ignoreDefaultArgs: true,
    args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--no-first-run', '--disable-quic', '--remote-debugging-pipe', `--user-data-dir=${mkdtempSync(join(tmpdir(), 'pmg-chromium-'))}`,
      ...(webgpu ? ['--enable-unsafe-webgpu'] : []), ...args],
  });
}

/** The greedy continuation llama.cpp produced for the chat "What is 2+2?" (first 16 tokens, to end of turn). */
export async function goldenTokens() {
  const golden = JSON.parse(await readFile(join(root, 'crates/pmg/tests/golden/smollm2_llama_cpp.json'), 'utf8'));
  const g = golden.generations.find((x) => x.prompt.includes('What is 2+2?'));
  const end = g.tokens.findIndex((t) => t === 2);
  return g.tokens.slice(0, Math.min(16, end < 0 ? 16 : end + 1));
}

/** A tiny test runner: `test(name, fn)`, then `await run()` prints results and returns the failure count. */
export function runner() {
  const tests = [];
  const only = process.env.PMG_TEST_FILTER;
  return {
    test: (name, fn) => tests.push({ name, fn }),
    async run() {
      let failed = 0;
      let passed = 0;
      for (const { name, fn } of tests) {
        if (only && !name.includes(only)) continue;
        const t0 = Date.now();
        try {
          await fn();
          passed++;
          console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
        } catch (e) {
          failed++;
          console.log(`FAIL ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n     ${e?.stack ?? e}`);
        }
      }
      console.log(`${passed} passed, ${failed} failed`);
      return failed;
    },
  };
}

export function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

export function assertEqual(a, b, msg) {
  const sa = JSON.stringify(a);
  const sb = JSON.stringify(b);
  if (sa !== sb) throw new Error(`${msg}: ${sa} !== ${sb}`);
}
