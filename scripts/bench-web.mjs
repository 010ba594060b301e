#!/usr/bin/env node
// One command: pmg (CPU and WebGPU) against wllama (llama.cpp in wasm: default and compat builds,
// 1 and 2 threads) in one headless Chromium run, with llama.cpp native and pmg native from the same
// invocation. Same GGUF, same 128-token prompt (checked with each system's tokenizer), 128 greedy
// tokens, median of --runs runs after one short warm-up. Prints a markdown table for BENCHMARKS.md.
//
//   node scripts/bench-web.mjs [--runs N] [--json out.json] [--only pmg-cpu,wllama-1,...]
//        [--webgpu-runs N] [--webgpu-tokens N] [--no-native] [--build-native] [--timeout S] [--debug]
//   node scripts/bench-web.mjs --serve      (serve the repo with COOP/COEP; open /web/bench/ by hand)
//
// Needs: Debian's /usr/bin/chromium, web/node_modules (playwright-core, @wllama/wllama,
// @wllama/wllama-compat), web/pkg (scripts/build-web.sh), models/*.gguf, and for the native rows
// llama-cpp-python and a built `pmg` binary ($CARGO_TARGET_DIR/release/pmg or target/release/pmg;
// not built here: --build-native builds it).
import { createServer } from 'node:http';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { extname, join, normalize, sep } from 'node:path';
import { cpus, loadavg, tmpdir } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = normalize(join(fileURLToPath(import.meta.url), '../..'));
const MODEL = 'models/SmolLM2-135M-Instruct.Q4_1.gguf';
const MODEL_PATH = join(root, MODEL);

// ---------------------------------------------------------------- options
const argv = process.argv.slice(2);
const flag = (name) => argv.includes(name);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
if (flag('-h') || flag('--help')) {
  const lines = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1);
  console.log(lines.slice(0, lines.findIndex((l) => !l.startsWith('//'))).map((l) => l.slice(3)).join('\n'));
  process.exit(0);
}
const RUNS = Number(opt('--runs', 3));
const TOKENS = Number(opt('--tokens', 128));
const PROMPT_TOKENS = 128;
// pmg on WebGPU runs on SwiftShader here (a CPU emulation of a GPU): slow, so fewer runs and tokens.
const WEBGPU_RUNS = Number(opt('--webgpu-runs', 1));
const WEBGPU_TOKENS = Number(opt('--webgpu-tokens', 32));
const TIMEOUT_S = Number(opt('--timeout', 1200));
const JSON_OUT = opt('--json', null);
const NATIVE = !flag('--no-native');
const THREADS = 2;

const SYSTEMS = [
  { id: 'pmg-cpu', kind: 'pmg', device: 'cpu', threads: 1 },
  { id: 'pmg-webgpu', kind: 'pmg', device: 'webgpu', threads: 1, runs: WEBGPU_RUNS, tokens: WEBGPU_TOKENS, warmup: 4 },
  { id: 'wllama-1', kind: 'wllama', build: 'default', threads: 1 },
  { id: 'wllama-2', kind: 'wllama', build: 'default', threads: 2 },
  { id: 'compat-1', kind: 'wllama', build: 'compat', threads: 1 },
  { id: 'compat-2', kind: 'wllama', build: 'compat', threads: 2 },
];
// (No wllama WebGPU row: with n_gpu_layers > 0 on this SwiftShader adapter wllama 3.13 still put
// every buffer on the CPU, so it would only repeat the 1-thread CPU row.)
const only = opt('--only', null)?.split(',');
const selected = SYSTEMS.filter((s) => !only || only.includes(s.id));

// ---------------------------------------------------------------- static server
// COOP/COEP make the page cross-origin isolated (SharedArrayBuffer), which wllama's multi-thread
// build needs for its pthreads. pmg itself needs no special headers (its wasm is single-threaded);
// they are here only for wllama's threads.
const types = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm',
  '.json': 'application/json', '.gguf': 'application/octet-stream', '.css': 'text/css',
};
const server = createServer(async (req, res) => {
  const path = normalize(join(root, decodeURIComponent(new URL(req.url, 'http://x').pathname)));
  if (path !== root && !path.startsWith(root + sep)) { res.writeHead(403).end(); return; }
  const headers = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp', 'cache-control': 'no-store' };
  try {
    let file = path;
    if ((await stat(file)).isDirectory()) file = join(file, 'index.html');
    res.writeHead(200, { ...headers, 'content-type': types[extname(file)] ?? 'application/octet-stream' });
    res.end(await readFile(file));
  } catch {
    res.writeHead(404, headers).end();
  }
});
await new Promise((r) => server.listen(flag('--serve') ? Number(opt('--port', 8123)) : 0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}`;
if (flag('--serve')) {
  console.log(`serving ${root} at ${origin}/web/bench/ (COOP/COEP set); Ctrl-C to stop`);
  await new Promise(() => {});
}

// ---------------------------------------------------------------- helpers
const sh = (cmd, args, env = {}) => {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  return { ok: r.status === 0, out: (r.stdout ?? '').trim(), err: (r.stderr ?? '').trim() || String(r.error ?? '') };
};
const uptime = () => sh('uptime', []).out || `load average: ${loadavg().map((x) => x.toFixed(2)).join(', ')}`;
const fmt = (v, d = 1) => (v == null || !Number.isFinite(v) ? '-' : v.toFixed(d));
const ratio = (a, b) => (a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) ? '-' : `${(a / b).toFixed(2)}x`);
const median = (xs) => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return v.length ? (v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2) : null;
};
// Share of all cores busy (anyone's work) over `ms`, from /proc/stat, and the runnable task count:
// other agents' builds on this machine show up here.
async function cpuBusy(ms) {
  try {
    const read = () => readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const a = read();
    await new Promise((r) => setTimeout(r, ms));
    const b = read();
    const d = b.map((x, i) => x - a[i]);
    const total = d.reduce((x, y) => x + y, 0);
    const idle = d[3] + (d[4] ?? 0);
    const running = readFileSync('/proc/stat', 'utf8').match(/procs_running (\d+)/)?.[1];
    return `${((100 * (total - idle)) / total).toFixed(0)}% of ${cpus().length} cores busy over ${ms / 1000} s, ${running} runnable tasks`;
  } catch {
    return 'unknown';
  }
}
const commonPrefix = (a, b) => {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
};

const state = {
  date: new Date().toISOString(),
  git: sh('git', ['rev-parse', '--short', 'HEAD']).out,
  cpu: `${cpus()[0]?.model ?? '?'} x${cpus().length}`,
  chromium: sh('/usr/bin/chromium', ['--version']).out.split('\n').pop(),
  node: process.version,
  wllama: JSON.parse(readFileSync(join(root, 'web/node_modules/@wllama/wllama/package.json'), 'utf8')).version,
  pmg_wasm: (() => { try { const s = statSync(join(root, 'web/pkg/pmg_bg.wasm')); return `${s.size} B, built ${s.mtime.toISOString()}`; } catch { return 'missing'; } })(),
  uptime_start: uptime(),
  cpu_busy_before: await cpuBusy(2000),
};
console.log(`# machine: ${state.cpu}; ${state.chromium}; node ${state.node}; wllama ${state.wllama}; git ${state.git}`);
console.log(`# pmg wasm: ${state.pmg_wasm}`);
console.log(`# start: ${state.uptime_start}; ${state.cpu_busy_before}`);

// ---------------------------------------------------------------- the prompt (llama.cpp's tokenizer)
// The longest word prefix of pmg bench's text (repeated) that is exactly 128 tokens, plus llama.cpp
// native's greedy continuation of it (the reference for the agreement check).
const PY_PROMPT = `
import json, sys
import numpy as np
import llama_cpp
model, text, want, n_ref = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
llm = llama_cpp.Llama(model_path=model, n_ctx=512, n_threads=2, verbose=False)
words = text.split(' ')
tok = lambda s: llm.tokenize(s.encode(), add_bos=False, special=True)
n = max(k for k in range(1, len(words) + 1) if len(tok(' '.join(words[:k]))) <= want)
prompt = ' '.join(words[:n])
ids = tok(prompt)
llm.eval(ids)
ref = []
for _ in range(n_ref):
    t = int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))))
    ref.append(t)
    llm.eval([t])
print(json.dumps({"prompt": prompt, "ids": ids, "ref_tokens": ref, "ref_text": llm.detokenize(ref).decode("utf-8", "replace")}))
`;
const BENCH_TEXT = "A small quantized language model runs on the user's own device, reads what the user did "
  + 'on a website, and describes their taste in a handful of keywords. A diffusion model then draws a sticker '
  + 'that matches both the requested occasion and that taste. Nothing about the user leaves the browser: the '
  + 'site only serves static files, and every computation happens locally, on a laptop or a phone. ';
let prompt = BENCH_TEXT.repeat(4).split(' ').slice(0, 112).join(' ');
let promptIds = null;
let refTokens = null;
let refText = null;
{
  const r = sh('python3', ['-c', PY_PROMPT, MODEL_PATH, BENCH_TEXT.repeat(4).trim(), String(PROMPT_TOKENS), String(TOKENS)]);
  if (r.ok) {
    ({ prompt, ids: promptIds, ref_tokens: refTokens, ref_text: refText } = JSON.parse(r.out.split('\n').pop()));
    console.log(`# prompt: ${prompt.split(' ').length} words, ${promptIds.length} tokens (llama.cpp tokenizer)`);
  } else {
    console.log(`# llama-cpp-python unavailable (${r.err.split('\n').pop()}): using the 112-word prompt, no native llama.cpp row`);
  }
}

// ---------------------------------------------------------------- browser
const { chromium } = await import(pathToFileURL(join(root, 'web/node_modules/playwright-core/index.mjs')).href);
const userDir = mkdtempSync(join(tmpdir(), 'pmg-bench-chromium-'));
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  ignoreDefaultArgs: true,
  args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--no-first-run', '--disable-quic', '--enable-unsafe-webgpu', '--remote-debugging-pipe', `--user-data-dir=${userDir}`],
});
const results = [];
try {
  for (const s of selected) {
    // A fresh page per system: its own wasm heap, workers and WebGPU device; nothing shared but the browser.
    const page = await browser.newPage();
    if (flag('--debug')) await page.addInitScript(() => { window.BENCH_DEBUG = true; });
    page.on('console', (m) => console.log(`  [${s.id}] ${m.text()}`));
    page.on('pageerror', (e) => console.log(`  [${s.id} page error] ${e}`));
    const t0 = Date.now();
    try {
      await page.goto(`${origin}/web/bench/index.html`);
      await page.waitForFunction(() => window.benchReady === true, null, { timeout: 60_000 });
      const args = { prompt, runs: s.runs ?? RUNS, maxTokens: s.tokens ?? TOKENS, warmup: s.warmup ?? 16 };
      const run = s.kind === 'pmg'
        ? page.evaluate((a) => window.bench.runPmg(a), { ...args, device: s.device })
        : page.evaluate((a) => window.bench.runWllama(a), { ...args, build: s.build, threads: s.threads });
      let timer;
      const r = await Promise.race([run, new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`timed out after ${TIMEOUT_S} s`)), TIMEOUT_S * 1000); })]);
      clearTimeout(timer);
      results.push({ id: s.id, where: 'browser', ...r, wall_s: (Date.now() - t0) / 1000 });
    } catch (e) {
      console.log(`  [${s.id}] FAILED: ${String(e).split('\n')[0]}`);
      results.push({ id: s.id, where: 'browser', system: s.id, threads: s.threads, error: String(e).split('\n')[0] });
    } finally {
      await page.close().catch(() => {});
    }
  }
} finally {
  await browser.close();
  server.close();
  rmSync(userDir, { recursive: true, force: true });
}
state.uptime_after_browser = uptime();

// ---------------------------------------------------------------- native
if (NATIVE && promptIds) {
  console.log(`# llama.cpp native, ${THREADS} threads, ${RUNS} runs`);
  const r = sh('python3', [join(root, 'scripts/bench_llama_cpp.py'), MODEL_PATH, JSON.stringify(promptIds), String(THREADS), String(RUNS)]);
  if (r.ok) results.push({ id: 'llama.cpp', where: 'native', threads: THREADS, load_s: null, generated: [128], prompt_tokens: promptIds.length, ...JSON.parse(r.out.split('\n').pop()) });
  else console.log(`  llama.cpp native failed: ${r.err.split('\n').slice(-3).join(' | ')}`);
}
if (NATIVE) {
  const candidates = [process.env.CARGO_TARGET_DIR, '/var/cache/pmg/target', join(root, 'target')].filter(Boolean).map((d) => join(d, 'release/pmg'));
  let bin = candidates.find((p) => existsSync(p));
  if (!bin && flag('--build-native')) {
    console.log('# building pmg (cargo build --release --bin pmg)');
    if (sh('cargo', ['build', '--release', '--quiet', '--bin', 'pmg']).ok) bin = candidates.find((p) => existsSync(p));
  }
  if (bin) {
    console.log(`# pmg native (${bin}), ${THREADS} threads, ${RUNS} runs`);
    const r = sh(bin, ['bench', '--device', 'cpu', '--model', MODEL_PATH, '--runs', String(RUNS), '--prompt-tokens', String(PROMPT_TOKENS), '--gen-tokens', String(TOKENS)], { RAYON_NUM_THREADS: String(THREADS) });
    if (r.ok) {
      const j = JSON.parse(r.out.split('\n').pop());
      const same = promptIds && JSON.stringify(j.prompt_ids) === JSON.stringify(promptIds);
      results.push({ id: 'pmg-native', where: 'native', ...j, generated: [TOKENS], prompt_tokens: j.prompt_ids?.length, same_prompt_ids: same, prompt_ids: undefined });
    } else console.log(`  pmg native failed: ${r.err.split('\n').slice(-3).join(' | ')}`);
  } else if (NATIVE) console.log('# pmg native: no release binary found (pass --build-native to build it)');
}
state.uptime_end = uptime();

// ---------------------------------------------------------------- report
const byId = Object.fromEntries(results.map((r) => [r.id, r]));
const w1 = byId['wllama-1']?.decode_tok_s;
const c1 = byId['compat-1']?.decode_tok_s;
const ref = byId['llama.cpp'];
const label = (r) => {
  if (r.id === 'llama.cpp') return r.system.replace(/, \d+ threads$/, '');
  if (r.id === 'pmg-native') return 'pmg native CPU (`pmg bench`)';
  if (r.id === 'pmg-cpu') return `pmg CPU (browser; ${(r.adapter ?? '').replace(/^cpu \((.*)\)$/, '$1').replace(/, 1 thread$/, '')})`;
  if (r.id === 'pmg-webgpu') return `pmg WebGPU (browser; ${(r.adapter ?? '').replace(/ \(WebGPU\)$/, '')})`;
  return `wllama ${state.wllama}${r.build === 'compat' ? ' compat build' : ''} (browser)`;
};
const lines = [];
lines.push(`| system | threads | load s | prefill tok/s | decode tok/s | decode ms/token | tokens generated | decode vs wllama 1 thread | decode vs wllama-compat 1 thread | prefill vs llama.cpp | decode vs llama.cpp |`);
lines.push('|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  if (r.error) {
    lines.push(`| ${r.id} | ${r.threads ?? '-'} | failed: ${r.error.replace(/\|/g, '/')} | | | | | | | | |`);
    continue;
  }
  const runs = r.runs != null && typeof r.runs === 'number' && r.where === 'browser' ? ` x${r.runs}` : '';
  lines.push(`| ${label(r)} | ${r.threads ?? '-'} | ${fmt(r.load_s, 2)} | ${fmt(r.prefill_tok_s)} | ${fmt(r.decode_tok_s)} | ${fmt(r.decode_tok_s ? 1000 / r.decode_tok_s : null)} | `
    + `${(r.generated ?? []).join('/')}${runs} | ${ratio(r.decode_tok_s, w1)} | ${ratio(r.decode_tok_s, c1)} | ${ratio(r.prefill_tok_s, ref?.prefill_tok_s)} | ${ratio(r.decode_tok_s, ref?.decode_tok_s)} |`);
}
const table = lines.join('\n');

// Greedy agreement: every browser system's first tokens against llama.cpp native's greedy continuation.
// Ids where the system returns them (pmg: all; wllama: the warm-up run's, see bench.js), and the text
// of the first measured run (all of it) against llama.cpp native's greedy text. Greedy decoding can
// part at a near-tie (different summation order), so this reports and never fails.
const agreement = [];
if (refTokens) {
  for (const r of results.filter((x) => x.where === 'browser' && !x.error)) {
    const parts = [];
    if (r.tokens?.length) {
      const k = commonPrefix(r.tokens, refTokens);
      const n = Math.min(r.tokens.length, refTokens.length);
      parts.push(k === n ? `ids ${n}/${n} equal` : `ids equal up to token ${k} of ${n}`);
    }
    if (typeof r.text === 'string' && r.text.length) {
      const a = [...r.text], b = [...refText];
      const k = commonPrefix(a, b);
      const n = Math.min(a.length, b.length);
      parts.push(k === n ? `text equal (${n} characters)` : `text parts after ${k} of ${n} characters: ${JSON.stringify(a.slice(Math.max(0, k - 12), k + 16).join(''))} vs ${JSON.stringify(b.slice(Math.max(0, k - 12), k + 16).join(''))}`);
    }
    agreement.push(`${r.id}: ${parts.join(', ') || '-'}`);
  }
}
const promptCheck = results.filter((r) => r.where === 'browser' && !r.error)
  .map((r) => `${r.id} ${r.prompt_tokens ?? '?'}`).join(', ');

console.log('\n' + table + '\n');
console.log(`Prompt tokens as counted by each system: ${promptCheck}${promptIds ? `, llama.cpp native ${promptIds.length}` : ''}`);
const badPrompt = results.filter((r) => !r.error && r.prompt_tokens != null && r.prompt_tokens !== PROMPT_TOKENS);
if (badPrompt.length) console.log(`WARNING: not ${PROMPT_TOKENS} prompt tokens for ${badPrompt.map((r) => r.id).join(', ')}`);
const short = results.filter((r) => !r.error && (r.generated ?? []).some((n) => n < (r.id === 'pmg-webgpu' ? WEBGPU_TOKENS : TOKENS)));
if (short.length) console.log(`WARNING: fewer tokens generated than asked for by ${short.map((r) => r.id).join(', ')}`);
if (byId['pmg-native']) console.log(`pmg native used its own bench prompt (same text tokenized per repetition): ids ${byId['pmg-native'].same_prompt_ids ? 'identical' : 'not identical'} to the browser prompt, same length.`);
console.log(`Greedy agreement with llama.cpp native (${refTokens?.length ?? 0} tokens):\n${agreement.map((x) => `  ${x}`).join('\n') || '  -'}`);
console.log(`Machine: ${state.cpu}; before the run: ${state.cpu_busy_before}; load at start: ${state.uptime_start}; after the browser part: ${state.uptime_after_browser}; at the end: ${state.uptime_end}`);
if (JSON_OUT) {
  await writeFile(JSON_OUT, JSON.stringify({ state, prompt, prompt_ids: promptIds, ref_tokens: refTokens, results, table, agreement }, null, 2));
  console.log(`wrote ${JSON_OUT}`);
}
process.exit(results.some((r) => r.error) ? 1 : 0);
