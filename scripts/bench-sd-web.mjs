#!/usr/bin/env node
// Stable Diffusion at real sizes in headless Chromium (issue 21, deliver 6): pmg-web loads a
// random-weight folder of the published shapes (scripts/bench_sd.py make) over HTTP, then draws
// one 1-step and one 2-step image (guidance 0, TAESD decoding): the difference is one UNet call,
// the rest text encoding + decode. Reports load time, both, and the wasm heap (its peak: wasm
// memory never shrinks). Prints a markdown table for BENCHMARKS.md.
//   node scripts/bench-sd-web.mjs [--dir DIR] [--cases 'sd-turbo:q8_0:cpu,bk-sdm-tiny:f32:webgpu']
// Needs web/pkg (scripts/build-web.sh) and models/ (the LLM the package loads first).
import { cpus } from 'node:os';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { launch, serve } from '../web/tests/lib.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : dflt);
const dir = opt('--dir', process.env.PMG_SD_BENCH_DIR ?? join(homedir(), '.cache/pmg/sd-real'));
const cases = opt('--cases', 'sd-turbo:q8_0:cpu,bk-sdm-tiny:f32:cpu,bk-sdm-tiny:q8_0:cpu,bk-sdm-tiny:q8_0:webgpu')
  .split(',')
  .map((c) => c.split(':'));
const timeoutMs = Number(opt('--timeout-min', 40)) * 60_000;

const server = await serve();
const weights = await serve({}, dir, { 'access-control-allow-origin': '*' });
const rows = [];
for (const [model, quantize, device] of cases) {
  const browser = await launch({ webgpu: device === 'webgpu' });
  const page = await browser.newPage();
  page.setDefaultTimeout(timeoutMs);
  await page.goto(`${server.origin}/web/tests/harness.html`);
  await page.waitForFunction(() => window.harnessReady);
  console.error(`== ${model} ${quantize} ${device}`);
  try {
    const r = await page.evaluate(
      async ({ base, model, quantize, device }) => {
        const { Pmg } = window.pmgWeb;
        const t0 = performance.now();
        const pmg = await Pmg.load({
          llmBaseUrl: '/models/',
          device,
          generator: { kind: 'sd', baseUrl: `${base}/${model}/`, vaeBaseUrl: `${base}/taesd/`, quantize },
          preload: ['generator'],
        });
        const load = performance.now() - t0;
        const draw = async (steps) => {
          const t = performance.now();
          await pmg.generateImage({ prompt: 'a red fox sticker', seed: 1, steps, guidance: 0, sampler: 'euler' });
          return performance.now() - t;
        };
        const one = await draw(1);
        const two = await draw(2);
        const info = await pmg.info();
        pmg.dispose();
        return { load, one, two, adapter: info.adapter, heap: info.memory.wasmHeapBytes };
      },
      { base: weights.origin, model, quantize, device },
    );
    rows.push({ model, quantize, ...r });
  } catch (e) {
    console.error(`${model} ${quantize} ${device} failed: ${String(e.message ?? e).slice(0, 400)}`);
    rows.push({ model, quantize, adapter: device, failed: String(e.message ?? e).split('\n')[0].slice(0, 160) });
  }
  await browser.close();
}
server.close();
weights.close();

console.log(`\n${cpus().length} cores (${cpus()[0].model}); 512x512, guidance 0, TAESD decoding\n`);
console.log('| model | linears | pmg-web device | load s | 1-step image ms | UNet call ms | wasm heap MiB |\n|---|---|---|---|---|---|---|');
const f = (v) => (v === undefined ? '-' : v.toFixed(0));
for (const r of rows) {
  if (r.failed) console.log(`| ${r.model} | ${r.quantize} | ${r.adapter} | failed: ${r.failed} | | | |`);
  else console.log(`| ${r.model} | ${r.quantize} | ${r.adapter} | ${(r.load / 1000).toFixed(1)} | ${f(r.one)} | ${f(r.two - r.one)} | ${f(r.heap / 2 ** 20)} |`);
}
