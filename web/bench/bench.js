// In-browser benchmark of pmg (raw wasm-bindgen API, CPU and WebGPU) and wllama (llama.cpp in wasm,
// default and compat builds, 1 or more threads) on the same GGUF, the same prompt and the same
// greedy workload. Driven by scripts/bench-web.mjs; web/bench/index.html also runs it by hand.
//
// Measured per run, in the page's own clock (performance.now()), the same way for every system:
//   prefill tok/s = prompt tokens / (time of the first generated token - time of the request)
//   decode tok/s  = (generated tokens - 1) / (time of the last token - time of the first token)
// Load time = wasm module start-up + model load from GGUF bytes already in memory (the GGUF fetch
// from the local server is timed apart as fetch_s).

export const MODEL_URL = new URL('../../models/SmolLM2-135M-Instruct.Q4_1.gguf', import.meta.url).href;
const PMG_JS = new URL('../pkg/pmg.js', import.meta.url).href;
const WLLAMA_JS = new URL('../node_modules/@wllama/wllama/esm/index.js', import.meta.url).href;
const WLLAMA_WASM = new URL('../node_modules/@wllama/wllama/esm/wasm/wllama.wasm', import.meta.url).href;
const COMPAT_WASM = new URL('../node_modules/@wllama/wllama-compat/wasm/wllama.wasm', import.meta.url).href;
const COMPAT_JS = new URL('../node_modules/@wllama/wllama-compat/wasm/wllama.js', import.meta.url).href;

// The text of `pmg bench` (crates/pmg-cli/src/main.rs), repeated. Its first 112 words are exactly 128 tokens for
// SmolLM2's tokenizer (checked at run time against pmg's and llama.cpp's tokenizers by the script).
export const BENCH_TEXT = "A small quantized language model runs on the user's own device, reads what the user did " +
  'on a website, and describes their taste in a handful of keywords. A diffusion model then draws a sticker ' +
  'that matches both the requested occasion and that taste. Nothing about the user leaves the browser: the ' +
  'site only serves static files, and every computation happens locally, on a laptop or a phone. ';
export const defaultPrompt = (words = 112) => BENCH_TEXT.repeat(4).split(' ').slice(0, words).join(' ');

const median = (xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const now = () => performance.now();
const log = (msg) => {
  console.log(msg);
  const el = globalThis.document?.querySelector('#log');
  if (el) el.textContent += `${msg}\n`;
};

let modelBytes = null;
async function fetchModel() {
  const t = now();
  if (!modelBytes) modelBytes = new Uint8Array(await (await fetch(MODEL_URL)).arrayBuffer());
  return { bytes: modelBytes, fetch_s: (now() - t) / 1000 };
}

function summarize(base, runs, promptTokens) {
  const measured = runs.filter((r) => !r.warmup);
  return {
    ...base,
    prompt_tokens: promptTokens,
    runs: measured.length,
    generated: measured.map((r) => r.n),
    prefill_tok_s: median(measured.map((r) => r.prefill_tok_s)),
    decode_tok_s: median(measured.map((r) => r.decode_tok_s)),
    ttft_ms: median(measured.map((r) => r.ttft_ms)),
    decode_ms_per_token: median(measured.map((r) => r.decode_ms_per_token)),
    per_run: runs,
  };
}

function timing(t0, stamps, promptTokens) {
  const n = stamps.length;
  const ttft = n ? stamps[0] - t0 : NaN;
  const dec = n > 1 ? (stamps[n - 1] - stamps[0]) / (n - 1) : NaN;
  return { n, ttft_ms: ttft, prefill_tok_s: (promptTokens / ttft) * 1000, decode_ms_per_token: dec, decode_tok_s: 1000 / dec };
}

/**
 * pmg through its raw wasm-bindgen API. `device`: 'cpu' | 'webgpu'.
 * `warmup`: tokens of an unmeasured first run (0: none).
 */
export async function runPmg({ device = 'cpu', prompt = defaultPrompt(), runs = 3, maxTokens = 128, warmup = 16, nCtx = 512 } = {}) {
  const { bytes, fetch_s } = await fetchModel();
  const t0 = now();
  const { default: init, Llm } = await import(PMG_JS);
  await init();
  const tInit = now();
  const llm = await Llm.load(bytes, device, nCtx);
  const load_s = (now() - t0) / 1000;
  const info = llm.info();
  const ids = Array.from(llm.tokenize(prompt));
  log(`pmg ${info.backend} (${info.adapter}): loaded in ${load_s.toFixed(2)} s (wasm init ${((tInit - t0) / 1000).toFixed(2)} s), prompt ${ids.length} tokens`);
  const all = [];
  let tokens = null, text = null, finish = null;
  for (let i = warmup > 0 ? -1 : 0; i < runs; i++) {
    const stamps = [];
    const t = now();
    const r = await llm.complete(prompt, { maxTokens: i < 0 ? warmup : maxTokens, temperature: 0 }, () => { stamps.push(now()); });
    const m = { warmup: i < 0, ...timing(t, stamps, ids.length) };
    all.push(m);
    if (i === 0) ({ tokens, text, finishReason: finish } = r);
    log(`  ${i < 0 ? 'warm-up' : `run ${i + 1}`}: ${m.n} tokens, prefill ${m.prefill_tok_s.toFixed(1)} tok/s, decode ${m.decode_tok_s.toFixed(1)} tok/s`);
  }
  llm.free();
  return summarize({
    system: `pmg ${info.backend}`, backend: info.backend, adapter: info.adapter, software_adapter: info.softwareAdapter,
    threads: 1, load_s, fetch_s, prompt_ids: ids, tokens, text, finish_reason: finish,
  }, all, ids.length);
}

/**
 * wllama 3.x. `build`: 'default' (JSPI + memory64 wasm) or 'compat' (@wllama/wllama-compat, asyncify,
 * wasm32). `threads` > 1 needs a cross-origin isolated page (COOP/COEP). `gpu`: let llama.cpp offload
 * to WebGPU (default false: CPU only, n_gpu_layers 0; on SwiftShader here wllama 3.13 kept every
 * buffer on the CPU anyway). `warmup`: tokens of an unmeasured first run, which also returns
 * the token ids (0: no warm-up, ids from the first measured run).
 */
export async function runWllama({ build = 'default', threads = 1, gpu = false, prompt = defaultPrompt(), runs = 3, maxTokens = 128, warmup = 16, nCtx = 512 } = {}) {
  const { bytes, fetch_s } = await fetchModel();
  const { Wllama, LoggerWithoutDebug } = await import(WLLAMA_JS);
  const t0 = now();
  const w = new Wllama({ default: WLLAMA_WASM }, globalThis.BENCH_DEBUG ? { logger: console } : { logger: LoggerWithoutDebug, suppressNativeLog: true });
  // Local assets only: no CDN. wllama switches to its compat build only where JSPI or memory64 is
  // missing, which is not the case in Chromium; to measure the compat build here we hide JSPI from
  // wllama while it chooses its build (the only place it reads it), then put it back.
  const saved = WebAssembly.Suspending;
  if (build === 'compat') {
    w.setCompat({ wasm: COMPAT_WASM, worker: COMPAT_JS });
    delete WebAssembly.Suspending;
  } else {
    w.setCompat(null);
  }
  try {
    await w.loadModel([new File([bytes], 'model.gguf')], { n_threads: threads, n_ctx: nCtx, n_gpu_layers: gpu ? 999 : 0 });
  } finally {
    if (saved && !WebAssembly.Suspending) WebAssembly.Suspending = saved;
  }
  const load_s = (now() - t0) / 1000;
  // (`proxy.resources` is what the loaded worker runs; getWorkerResources() would re-detect.)
  const used = { build: w.proxy?.resources?.compat ? 'compat' : 'default', threads: w.getNumThreads(), multithread: w.isMultithread() };
  if (used.build !== build) throw new Error(`asked for the ${build} build, got ${used.build}`);
  if (used.threads !== threads) throw new Error(`asked for ${threads} threads, got ${used.threads} (cross-origin isolated: ${globalThis.crossOriginIsolated})`);
  log(`wllama ${build}, ${used.threads} thread(s)${gpu ? ', WebGPU' : ''}: loaded in ${load_s.toFixed(2)} s`);
  const all = [];
  let tokens = null, text = null, finish = null, promptTokens = null;
  for (let i = warmup > 0 ? -1 : 0; i < runs; i++) {
    const stamps = [];
    let out = '';
    let last = null;
    const ids = [];
    const debugChunks = [];
    const t = now();
    await w.createCompletion({
      prompt, max_tokens: i < 0 ? warmup : maxTokens, temperature: 0, ignore_eos: true,
      // A llama-server option, passed through: no prompt reuse between runs (else the second run's
      // prefill is free).
      cache_prompt: false,
      // Token ids come back only with log-probabilities (a softmax over the vocabulary per token):
      // asked for in the warm-up run only, which feeds the greedy agreement check.
      ...(i < 0 || !warmup ? { logprobs: 1 } : {}),
      stream: true,
      onData: (chunk) => {
        const tnow = now();
        last = chunk;
        if (debugChunks.length < 3) debugChunks.push(chunk);
        const c = chunk.choices?.[0];
        const got = c?.logprobs?.content?.map((x) => x.id);
        const k = got?.length ? got.length : (c?.text ? 1 : 0);
        if (got) ids.push(...got);
        if (c?.text) out += c.text;
        for (let j = 0; j < k; j++) stamps.push(tnow);
      },
    });
    const pt = last?.usage?.prompt_tokens ?? last?.timings?.prompt_n ?? null;
    promptTokens ??= pt;
    const tm = last?.timings;
    const m = {
      warmup: i < 0, ...timing(t, stamps, pt ?? NaN),
      reported_n: last?.usage?.completion_tokens ?? tm?.predicted_n ?? null,
      // wllama's own (llama-server) timings, measured inside the worker.
      internal: tm ? { prompt_n: tm.prompt_n, cache_n: tm.cache_n, prefill_tok_s: tm.prompt_per_second, decode_tok_s: tm.predicted_per_second, predicted_n: tm.predicted_n } : null,
    };
    if (globalThis.BENCH_DEBUG) m.chunks = [...debugChunks, last];
    all.push(m);
    if (ids.length && !tokens) tokens = ids;
    if (i === 0) { text = out; finish = last?.choices?.[0]?.finish_reason ?? null; }
    log(`  ${i < 0 ? 'warm-up' : `run ${i + 1}`}: ${m.n} tokens (reported ${m.reported_n}), prefill ${m.prefill_tok_s.toFixed(1)} tok/s, decode ${m.decode_tok_s.toFixed(1)} tok/s`
      + (tm ? ` [internal: prompt ${tm.prompt_n} (cached ${tm.cache_n}) at ${tm.prompt_per_second?.toFixed(1)}, decode ${tm.predicted_per_second?.toFixed(1)}]` : ''));
  }
  await w.exit();
  return summarize({
    system: `wllama ${build}${gpu ? ' webgpu' : ''}`, build, gpu, threads: used.threads, multithread: used.multithread,
    load_s, fetch_s, tokens, text, finish_reason: finish, cross_origin_isolated: globalThis.crossOriginIsolated,
  }, all, promptTokens);
}
