// The fixture apps (web/fixtures/) as a web developer gets them: each is copied into a fresh folder,
// installs the packed tarball (scripts/build-web.sh) and its bundler from the registry, is built for
// production and served as static files; Chromium (CPU, then WebGPU) runs it: the page records a
// history, loads the default LLM from its pinned URL, runs personalize and shows the picture.
//   node web/tests/fixtures.mjs        (PMG_TEST_FILTER=vite runs one; screenshots in target/browser-artifacts/)
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { assert, assertEqual, defaultLlmArchive, launch, pinnedHost, root, runner, serve } from './lib.mjs';

const target = process.env.CARGO_TARGET_DIR ?? join(root, 'target');
const npmDir = join(target, 'npm');
const tarball = readdirSync(npmDir).filter((f) => /^pmg-web-.*\.tgz$/.test(f)).map((f) => join(npmDir, f))[0];
if (!tarball) throw new Error(`no pmg-web tarball in ${npmDir}: run scripts/build-web.sh`);
const fixtures = join(root, 'web/fixtures');
const artifacts = join(root, 'target/browser-artifacts');
mkdirSync(artifacts, { recursive: true });

const pypi = await pinnedHost(await defaultLlmArchive());
const browser = await launch({ args: pypi.args });
const { test, run } = runner();

/** A fresh copy of fixture `name` with the shared app, the tarball installed, built; returns the folder to serve. */
function prepare(name) {
  const dir = join(target, 'fixtures', name);
  rmSync(dir, { recursive: true, force: true });
  cpSync(join(fixtures, name), dir, { recursive: true });
  cpSync(join(fixtures, 'app.js'), join(dir, 'app.js'));
  if (name !== 'esm') cpSync(join(fixtures, 'index.html'), join(dir, 'index.html'));
  const npm = (...args) => execFileSync('npm', args, { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  const t0 = Date.now();
  npm('install', '--no-audit', '--no-fund', '--loglevel=error', tarball);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  if (pkg.scripts?.build) npm('run', 'build', '--silent');
  console.log(`     ${name}: installed and built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  if (name === 'webpack') cpSync(join(fixtures, 'index.html'), join(dir, 'dist/index.html'));
  return name === 'esm' ? dir : join(dir, 'dist');
}

/** Open the app on `device`, wait for the picture, screenshot it; returns what the page showed and fetched. */
async function visit(origin, device, shot, log) {
  const context = await browser.newContext();
  if (device === 'webgpu') {
    // The only WebGPU adapter here is SwiftShader, a CPU emulation taking about a minute per denoising
    // step of six candidates: the test shortens the run to 2 steps x 2 candidates by rewriting the
    // app's message to its worker (the app's code is untouched; the CPU run is the app as it is).
    await context.addInitScript(() => {
      const post = Worker.prototype.postMessage;
      Worker.prototype.postMessage = function (m, ...rest) {
        if (m?.op === 'personalize') m = { ...m, args: { ...m.args, steps: 2, weights: [0, 1], seeds: 1 } };
        return post.call(this, m, ...rest);
      };
    });
  }
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const before = log.length;
  const t0 = Date.now();
  await page.goto(`${origin}/index.html?device=${device}`);
  await page.waitForFunction(() => document.querySelector('img')?.src.startsWith('blob:') && document.querySelector('img').complete, null, { timeout: 240_000 })
    .catch((e) => {
      throw new Error(`no picture on ${device}: ${errors.join('; ') || e.message}`);
    });
  const shown = await page.evaluate(() => {
    const img = document.querySelector('img');
    const c = document.createElement('canvas');
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    c.getContext('2d').drawImage(img, 0, 0);
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let opaque = 0;
    for (let i = 3; i < px.length; i += 4) opaque += px[i] > 0 ? 1 : 0;
    return { w: img.naturalWidth, h: img.naturalHeight, opaque: opaque / (px.length / 4), alt: img.alt, progress: document.querySelector('progress').value };
  });
  await page.screenshot({ path: join(artifacts, shot) });
  await context.close();
  return { ...shown, errors, seconds: (Date.now() - t0) / 1000, requests: log.slice(before) };
}

function check(name, device, r) {
  assertEqual([r.w, r.h, r.errors], [256, 256, []], `${name} on ${device}: a 256x256 picture, no page errors`);
  assert(r.opaque > 0.05 && r.opaque < 0.98, `${name} on ${device}: a sticker on transparency, not an empty or full frame (${r.opaque.toFixed(2)} opaque)`);
  assert(/^birthday cake for someone who likes .+/.test(r.alt) && r.progress === 1, `${name} on ${device}: ${r.alt}; progress ${r.progress}`);
  const paths = r.requests.map((x) => x.path);
  for (const ext of ['.wasm', '.safetensors']) assert(paths.some((p) => p.endsWith(ext)), `${name}: the ${ext} assets came from the app's own origin: ${paths.join(' ')}`);
  assert(r.requests.every((x) => x.method === 'GET' && !x.body), `${name}: only GETs`);
  console.log(`     ${name} on ${device}: ${r.alt} (${r.seconds.toFixed(1)} s)`);
}

// WebGPU here is SwiftShader: a shortened run still takes about 3 minutes, mostly the LLM. CI runs it for
// the Vite app (the bundled WebGPU path is the same worker and wasm in each); PMG_FIXTURES_WEBGPU=all runs all.
const webgpuFor = process.env.PMG_FIXTURES_WEBGPU === 'all' ? ['vite', 'webpack', 'esm'] : ['vite'];

for (const name of ['vite', 'webpack', 'esm']) {
  const devices = webgpuFor.includes(name) ? ['cpu', 'webgpu'] : ['cpu'];
  test(`fixture ${name}: built from the tarball, history -> personalize -> picture on ${devices.join(' and ')}`, async () => {
    const server = await serve({}, prepare(name));
    try {
      for (const device of devices) check(name, device, await visit(server.origin, device, `fixture-${name}-${device}.png`, server.log));
    } finally {
      server.close();
    }
  });
}

test('fixture esm from a CDN: the import map points at the package on another origin', async () => {
  const dir = join(target, 'fixtures', 'esm');
  if (!existsSync(join(dir, 'node_modules'))) prepare('esm');
  const cdn = await serve({}, dir, { 'access-control-allow-origin': '*' });
  const html = readFileSync(join(dir, 'index.html'), 'utf8').replace('./node_modules/', `${cdn.origin}/node_modules/`);
  const app = await serve({ '/index.html': (req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(html) }, dir);
  try {
    const r = await visit(app.origin, 'cpu', 'fixture-esm-cdn.png', app.log);
    assertEqual([r.w, r.h, r.errors], [256, 256, []], 'a picture, no page errors');
    const fromCdn = cdn.log.map((x) => x.path);
    assert(fromCdn.includes('/node_modules/pmg-web/src/worker.js') && fromCdn.some((p) => p.endsWith('pmg_bg.wasm')), `worker and wasm from the CDN: ${fromCdn.join(' ')}`);
    console.log(`     esm from a CDN: ${r.alt} (${r.seconds.toFixed(1)} s)`);
  } finally {
    cdn.close();
    app.close();
  }
});

const failed = await run();
await browser.close();
pypi.close();
process.exit(failed ? 1 : 0);
