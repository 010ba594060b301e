// Smoke test in a real browser: serve the repo statically on loopback, open web/demo/llm.html in
// Debian's Chromium (WebGPU enabled) and check the greedy tokens against llama.cpp's golden data,
// and that the wasm SIMD128 dot-product kernels equal the scalar kernel (`kernelSelfTest`).
//   node web/tests/smoke.mjs [cpu|webgpu|auto]
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { chromium } from 'playwright-core';

const root = normalize(join(fileURLToPath(import.meta.url), '../../..'));
const types = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };
const server = createServer(async (req, res) => {
  const path = normalize(join(root, decodeURIComponent(new URL(req.url, 'http://x').pathname)));
  if (!path.startsWith(root)) { res.writeHead(403).end(); return; }
  try {
    await stat(path);
    res.writeHead(200, { 'content-type': types[extname(path)] ?? 'application/octet-stream' });
    res.end(await readFile(path));
  } catch { res.writeHead(404).end(); }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const port = server.address().port;

const device = process.argv[2] ?? 'cpu';
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  ignoreDefaultArgs: true,
  args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--no-first-run', '--disable-quic', '--enable-unsafe-webgpu', '--remote-debugging-pipe', `--user-data-dir=${mkdtempSync(join(tmpdir(), 'pmg-chromium-'))}`],
});
let failed = false;
try {
  const page = await browser.newPage();
  page.on('console', (m) => console.log(`[page] ${m.text()}`));
  page.on('pageerror', (e) => console.log(`[page error] ${e}`));
  const t0 = Date.now();
  await page.goto(`http://127.0.0.1:${port}/web/demo/llm.html?device=${device}`);
  await page.waitForFunction(() => window.result !== undefined, null, { timeout: 600_000 });
  const result = await page.evaluate(() => window.result);
  const adapter = await page.textContent('#device');
  const golden = JSON.parse(await readFile(join(root, 'tests/golden/smollm2_llama_cpp.json'), 'utf8'));
  const g = golden.generations.find((x) => x.prompt.includes('What is 2+2?'));
  // Up to 16 tokens, ending at the end-of-turn token where llama.cpp's continuation has one.
  const end = g.tokens.findIndex((t) => t === 2);
  const want = g.tokens.slice(0, Math.min(16, end < 0 ? 16 : end + 1));
  let ok = JSON.stringify(result.tokens.slice(0, 16)) === JSON.stringify(want);
  const info = await page.evaluate(() => window.info);
  if (device === 'auto') {
    // auto must avoid a software adapter (SwiftShader here): the CPU path is faster there.
    const fallback = await page.evaluate(async () => {
      const a = await navigator.gpu?.requestAdapter();
      return a ? (a.info?.isFallbackAdapter ?? a.isFallbackAdapter ?? false) : true;
    });
    const expected = fallback ? 'cpu' : 'webgpu';
    if (info.backend !== expected) {
      console.log(`auto chose ${info.backend} but the adapter is ${fallback ? 'a software fallback' : 'hardware'}`);
      ok = false;
    }
  } else if (info.backend !== device) {
    console.log(`asked for ${device}, got ${info.backend}`);
    ok = false;
  }
  const selfTest = await page.evaluate(() => window.selfTest);
  console.log(`kernel self-test: ${selfTest?.text}`);
  // The build enables SIMD128 (.cargo/config.toml), so the kernel checked must be the SIMD one.
  if (!selfTest?.ok || !selfTest.text.startsWith('wasm simd128')) ok = false;
  console.log(`${device} (${adapter}): ${JSON.stringify(result.text)} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  console.log(ok ? '1 passed, 0 failed' : `0 passed, 1 failed: tokens ${result.tokens} vs golden ${want}, kernel self-test ${selfTest?.ok ? 'passed' : 'failed'}`);
  failed = !ok;
} catch (e) {
  console.log(`0 passed, 1 failed: ${e}`);
  failed = true;
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
