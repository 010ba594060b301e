#!/usr/bin/env node
// One command: image generation latency of the shipped generator (one 64x64 image, 20 DDIM steps,
// guidance 3, so 20 UNet passes on a batch of 2) natively (pmg CLI, CPU and wgpu) and in headless
// Chromium (pmg-web, CPU wasm and WebGPU), median of --runs runs after one warm-up. Prints a
// markdown table for BENCHMARKS.md.
//   node scripts/bench-image.mjs [--runs N] [--steps N]
// Needs: target/release/pmg (cargo build --release), web/pkg (scripts/build-web.sh), models/.
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { launch, root, serve } from '../web/tests/lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : dflt);
const RUNS = Number(opt('--runs', 3));
const STEPS = Number(opt('--steps', 20));
const PROMPT = 'rabbit face';
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = [];

// Native: `pmg image` reports its own denoise+decode time (the model load is excluded).
const bin = join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'release/pmg');
for (const device of ['cpu', 'wgpu']) {
  const times = [];
  let adapter = '';
  for (let i = 0; i <= RUNS; i++) {
    const r = spawnSync(bin, ['image', '--prompt', PROMPT, '--seed', String(i), '--steps', String(STEPS), '--device', device, '--out', '/tmp/pmg-bench-image.png'], { encoding: 'utf8' });
    const m = /on (.*) \[(\w+)\]: load [\d.]+ s, denoise\+decode ([\d.]+) s/.exec(r.stderr);
    if (!m) {
      console.error(`native ${device} failed: ${r.stderr.slice(-400)}`);
      break;
    }
    adapter = m[1];
    if (i > 0) times.push(Number(m[3]) * 1000);
  }
  if (times.length) rows.push({ system: `pmg native, ${device}: ${adapter}`, ms: median(times) });
}

// Browser.
const server = await serve();
const browser = await launch();
const page = await browser.newPage();
await page.goto(`${server.origin}/web/tests/harness.html`);
await page.waitForFunction(() => window.harnessReady);
for (const device of ['cpu', 'webgpu']) {
  const r = await page.evaluate(async ({ device, runs, steps, prompt }) => {
    const { Pmg } = window.pmgWeb;
    const pmg = await Pmg.load({ llmBaseUrl: '/models/', device });
    const times = [];
    for (let i = 0; i <= runs; i++) {
      const t0 = performance.now();
      await pmg.generateImage({ prompt, seed: i, steps });
      if (i > 0) times.push(performance.now() - t0);
    }
    const info = await pmg.info();
    pmg.dispose();
    return { times, adapter: info.adapter };
  }, { device, runs: RUNS, steps: STEPS, prompt: PROMPT });
  rows.push({ system: `pmg-web in Chromium, ${device}: ${r.adapter}`, ms: median(r.times) });
}
await browser.close();
server.close();

console.log(`\n${cpus().length} cores (${cpus()[0].model}); ${STEPS} steps, guidance 3, one 64x64 image, median of ${RUNS}\n`);
console.log('| system | ms per image | ms per step |\n|---|---|---|');
for (const r of rows) console.log(`| ${r.system} | ${r.ms.toFixed(0)} | ${(r.ms / STEPS).toFixed(1)} |`);
