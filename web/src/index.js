// pmg-web: personalized generation in the browser. Entry point of the npm package.
//
//   import { Pmg } from 'pmg-web';
//   const pmg = await Pmg.load({ device: 'auto', onProgress: (p) => console.log(p) });
//   for await (const t of pmg.chat([{ role: 'user', content: 'Hi!' }], { maxTokens: 64 })) out.textContent += t.text;
//
// The model runs in a dedicated Web Worker (worker.js) unless `worker: false`; see README.md for the API.
// The history (`pmg.history`, or `pmg-web/history` alone) lives on the page and loads no wasm.

import { Engine, dispatch } from './engine.js';
import {
  AbortError, DisposedError, InvalidArgumentError, NotLoadedError, RuntimeError, errorFromJSON, toPmgError,
} from './errors.js';
import { History } from './history.js';
import { PmgImage } from './image.js';
import { defaultLlm, generator, models } from './models.js';

export * from './errors.js';
export { History, DEFAULT_RETENTION, validateEvent, validateEvents } from './history.js';
export { PmgImage, imageToBlob } from './image.js';
export { cachedModels, clearModelCache, CACHE_NAME } from './loader.js';
export { defaultLlm, generator, models } from './models.js';

const DEVICES = ['auto', 'webgpu', 'cpu'];
const PARTS = ['generator', 'scorer', 'softPrompt'];

/**
 * The worker: the caller's own (`Worker`, or its script URL), else the package's worker.js. A worker
 * script on another origin (the package imported from a CDN) cannot be started directly; a same-origin
 * blob module that imports it can.
 */
function startWorker(option) {
  if (typeof Worker !== 'undefined' && option instanceof Worker) return option;
  if (typeof option === 'string' || option instanceof URL) return moduleWorker(new URL(option, baseUrl()));
  try {
    // The literal `new Worker(new URL('./worker.js', import.meta.url))` is what bundlers look for.
    return new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'pmg' });
  } catch (e) {
    if (e?.name !== 'SecurityError') throw toPmgError(e);
    // Only unbundled code gets here; a string URL (not a second `new URL` literal) keeps bundlers
    // from emitting worker.js a second time as a raw asset.
    return moduleWorker(new URL(import.meta.url.replace(/[^/]*$/, 'worker.js')));
  }
}

function moduleWorker(url) {
  if (globalThis.location && url.origin === globalThis.location.origin) return new Worker(url, { type: 'module', name: 'pmg' });
  const shim = URL.createObjectURL(new Blob([`import ${JSON.stringify(String(url))};\n`], { type: 'text/javascript' }));
  const w = new Worker(shim, { type: 'module', name: 'pmg' });
  // The shim is fetched when the worker starts; it may go once the worker has answered or failed.
  const revoke = () => URL.revokeObjectURL(shim);
  w.addEventListener('message', revoke, { once: true });
  w.addEventListener('error', revoke, { once: true });
  return w;
}

/** Talks to the engine in a dedicated worker. */
class WorkerTransport {
  #worker;
  #next = 1;
  #pending = new Map();
  #dead = null;

  constructor(option) {
    this.#worker = startWorker(option);
    this.#worker.onmessage = ({ data }) => {
      const p = this.#pending.get(data.id);
      if (!p) return;
      if (data.type === 'progress') p.onProgress?.(data.value?.error ? { ...data.value, error: errorFromJSON(data.value.error) } : data.value);
      else if (data.type === 'token') p.onToken?.(data.value.text, data.value.id);
      else {
        this.#pending.delete(data.id);
        if (data.type === 'result') p.resolve(data.value);
        else p.reject(errorFromJSON(data.error));
      }
    };
    // Uncaught errors in the worker (e.g. the module failed to load) fail everything in flight.
    this.#worker.onerror = (e) => {
      e.preventDefault?.();
      this.#kill(new RuntimeError(`pmg worker failed: ${e.message ?? 'unknown error'}`));
    };
  }

  call(op, args, { onProgress, onToken } = {}) {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = this.#next++;
    return Object.assign(
      new Promise((resolve, reject) => {
        this.#pending.set(id, { resolve, reject, onProgress, onToken });
        this.#worker.postMessage({ id, op, args });
      }),
      { id },
    );
  }

  cancel(id) {
    if (!this.#dead) this.#worker.postMessage({ id: 0, op: 'cancel', args: { target: id } });
  }

  /** Stop the worker at once (it may be deep inside wasm); everything in flight rejects with `err`. */
  #kill(err) {
    this.#dead ??= err;
    this.#worker.terminate();
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  terminate(err = new DisposedError('this model was disposed')) {
    this.#kill(err);
  }
}

/** Runs the engine on the page itself (`worker: false`): simpler to debug, blocks the page while computing. */
class DirectTransport {
  #engine = new Engine();
  #cancelled = new Set();
  #next = 1;

  call(op, args, { onProgress, onToken, signal } = {}) {
    const id = this.#next++;
    const run = async () => {
      try {
        return await dispatch(this.#engine, op, args, { onProgress, onToken, signal, isCancelled: () => this.#cancelled.has(id) });
      } finally {
        this.#cancelled.delete(id);
      }
    };
    return Object.assign(run().catch((e) => Promise.reject(toPmgError(e))), { id });
  }

  cancel(id) {
    this.#cancelled.add(id);
  }

  terminate() {
    this.#engine.dispose();
  }
}

/**
 * A stream of generated tokens: iterate it with `for await`, or await `result` for the whole answer.
 * Breaking out of the loop stops the generation.
 */
export class Generation {
  #buffer = [];
  #done = false;
  #error = null;
  #wake = null;
  #aborted = false;
  #stop;
  /** @type {Promise<{ text: string, tokens: number[], finishReason: string }>} */
  result;

  constructor(start, stop, signal) {
    this.#stop = stop;
    this.result = start((text, id) => {
      this.#buffer.push({ text, id });
      this.#notify();
    }).then(
      (r) => {
        this.#done = true;
        this.#notify();
        if (this.#aborted) throw abortError('generation aborted', signal, { partial: r });
        return r;
      },
      (e) => {
        if (this.#aborted && e?.name === 'AbortError') e = abortError('generation aborted', signal, e);
        this.#error = e;
        this.#done = true;
        this.#notify();
        throw e;
      },
    );
    this.result.catch(() => {}); // the iterator reports errors too; don't flag an unhandled rejection
    const onAbort = () => {
      this.#aborted = true; // tokens still in flight are dropped: nothing is delivered after an abort
      this.#stop();
      this.#notify();
    };
    if (signal?.aborted) onAbort();
    else if (signal) {
      signal.addEventListener('abort', onAbort, { once: true });
      this.result.finally(() => signal.removeEventListener('abort', onAbort)).catch(() => {});
    }
  }

  #notify() {
    this.#wake?.();
    this.#wake = null;
  }

  /** The whole generated text. */
  async text() {
    return (await this.result).text;
  }

  async *[Symbol.asyncIterator]() {
    let finished = false;
    try {
      for (;;) {
        if (this.#aborted) {
          await this.result; // rejects with the AbortError (and what was generated in `partial`)
          throw abortError('generation aborted', signal);
        }
        if (this.#buffer.length) yield this.#buffer.shift();
        else if (this.#error) throw this.#error;
        else if (this.#done) {
          finished = true;
          return;
        } else await new Promise((r) => (this.#wake = r));
      }
    } finally {
      if (!finished && !this.#done) this.#stop(); // `break` out of for-await
    }
  }
}

/** A loaded model on this device. Create one with `await Pmg.load(options)`. */
export class Pmg {
  #t = null;
  #worker;
  #state = 'idle'; // idle | loading | ready | disposed
  #queue = Promise.resolve();
  #running = null;

  /**
   * `worker`: `true` (default) runs the model in the package's worker, `false` on the page, or pass
   * your own `Worker` (or its script URL) running `pmg-web/worker`. `history`: a `History`, or the
   * options of one (`{ user }`); usable right away, it loads no wasm. The model methods need `load()`.
   */
  constructor({ worker = true, history } = {}) {
    this.#worker = worker;
    this.history = history instanceof History ? history : new History(history);
    const create = (request) => this.#completion(request);
    /** OpenAI-style chat: `pmg.chat.completions.create({ messages, stream })`, beside `pmg.chat(messages)`. */
    this.chat = Object.assign((messages, options = {}) => this.#generate('chat', messages, options), { completions: { create } });
  }

  /** Shorthand for `new Pmg({ worker, history }).load(options)`. */
  static async load(options = {}) {
    const pmg = new Pmg({ worker: options.worker ?? true, history: options.history });
    await pmg.load(options);
    return pmg;
  }

  /** The transport, started on first use. */
  _transport() {
    if (this.#state === 'disposed') throw new DisposedError('this Pmg was disposed');
    this.#t ??= this.#worker === false ? new DirectTransport() : new WorkerTransport(this.#worker === true ? undefined : this.#worker);
    return this.#t;
  }

  /** `'idle' | 'loading' | 'ready' | 'disposed'`. */
  get state() {
    return this.#state;
  }

  /**
   * Download (or take from the cache) and start the LLM; `preload` fetches generator parts now too.
   * `onProgress` gets every file's events, each with `fraction`: the share of all bytes this load
   * fetches that has arrived (one overall figure for a progress bar).
   */
  async load(options = {}) {
    const { llm = defaultLlm, device = 'auto', onProgress = () => {}, signal, cache = true, nCtx, llmBaseUrl, generatorBaseUrl, wasmUrl } = options;
    if (this.#state === 'disposed') throw new DisposedError('this Pmg was disposed');
    if (this.#state !== 'idle') throw new InvalidArgumentError(`load() was already called (state: ${this.#state})`);
    if (!DEVICES.includes(device)) throw new InvalidArgumentError(`device must be one of ${DEVICES.join(', ')}, not ${JSON.stringify(device)}`);
    if ('modelBaseUrl' in options) throw new InvalidArgumentError('modelBaseUrl is now two options: llmBaseUrl (the GGUF) and generatorBaseUrl (the image weights)');
    const preload = options.preload === true ? PARTS : (options.preload ?? []);
    if (!Array.isArray(preload) || !preload.every((p) => PARTS.includes(p))) throw new InvalidArgumentError(`preload is true or a list of ${PARTS.join(', ')}`);
    if (signal?.aborted) throw abortError('model load aborted', signal);
    const model = resolveModel(llm, llmBaseUrl, options.sha256);
    const gen = resolveGenerator(generatorBaseUrl);
    const { sd, clip } = resolveFolders(options.generator, options.scorer);
    const worker = this.#worker !== false;
    const t = this._transport();
    this.#state = 'loading';
    const args = { ...model, device, cache, nCtx, wasmUrl: wasmUrl && String(new URL(wasmUrl, baseUrl())), generator: gen, sd, clip };
    const files = preload.flatMap((p) => (p === 'generator' ? ['autoencoder', 'denoiser'] : [p]));
    const progress = overallProgress(onProgress, (model.archive?.bytes ?? model.bytes ?? 0) + files.reduce((a, f) => a + gen[f].bytes, 0));
    let onAbort;
    const aborted = new Promise((_, reject) => {
      onAbort = () => {
        // A worker can be stopped anywhere, even inside wasm; the page's own engine stops at its next check.
        if (worker) t.terminate(abortError('model load aborted', signal));
        reject(abortError('model load aborted', signal));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    aborted.catch(() => {});
    try {
      const r = await Promise.race([t.call('load', args, { onProgress: (p) => progress({ file: 'llm', ...p }), signal }), aborted]);
      if (preload.length) await Promise.race([t.call('preload', { names: preload }, { onProgress: progress, signal }), aborted]);
      this.#state = 'ready';
      return { ...r, cacheError: r.cacheError && (r.cacheError instanceof Error ? r.cacheError : errorFromJSON(r.cacheError)) };
    } catch (e) {
      if (this.#state === 'disposed') throw new DisposedError('disposed while loading');
      this.#state = 'idle'; // load() may be called again
      t.terminate(toPmgError(e));
      this.#t = null;
      throw toPmgError(e);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Backend, adapter, model configuration and memory use. */
  async info() {
    return this.#call('info', {});
  }

  /**
   * Preference keywords from the stored history (or from `options.events`): `{ keywords: [{ text,
   * weight }], attributes, neutral, rendered }`. Options: `domain` ('stickers' | 'shop' | 'movies'),
   * `mode` ('direct' | 'per_attribute'), `nKeywords`, `temperature`, `seed`, `maxWords`, `render`.
   */
  async preferences({ events, ...options } = {}) {
    const list = events ?? (await this.history.list());
    return this.#queued(() => this.#call('preferences', { options, events: list }));
  }

  /** Keywords describing one item `{ id, title, category?, tags?, description? }` (PMG's target keywords). */
  async itemKeywords(item, n = 10, options = {}) {
    return this.#queued(() => this.#call('itemKeywords', { item, n, options }));
  }

  /**
   * Generate emoji-style images for a text prompt on this device: `{ images: ImageData[], seed,
   * steps, guidance, ms }`. Options: `seed` (0), `steps` (20, 1..50), `guidance` (3),
   * `sampler` ('ddim' | 'dpm-solver2m'; SD models also 'euler' | 'euler-ancestral' | 'lcm'), `n` (1..16 images, seeds seed..seed+n-1),
   * `onStep(step, total)`, `onProgress(p)` (generator download on first use), `signal`.
   * The same seed gives the same image on every backend (within rounding).
   */
  async generateImage({ onStep, onProgress, signal, ...options } = {}) {
    const progress = (p) => (p.phase === 'denoise' ? onStep?.(p.step, p.total) : onProgress?.(p));
    const r = await this.#abortable('generateImage', options, progress, signal, 'image generation aborted');
    return { ...r, images: r.images.map(PmgImage.from) };
  }

  /**
   * PMG end to end on this device: preferences from the stored history (or `events`), candidates
   * for `target` over preference weights and seeds, and the choice
   * `(1 - alpha) ln s(img, target) + alpha ln s(img, preferences)`. Resolves to `{ chosen,
   * candidates: [{ image: ImageData, weight, seed, prompt, accuracy, preference, score }],
   * preferences, usedKeywords, target, alpha, ms }`. Without `alpha`, the user's alpha learned from
   * their feedback is used. `onProgress(p)`: downloads, then `{ phase: 'extract' | 'encode' |
   * 'denoise' | 'score', step?, total? }`. `signal` aborts between stages and steps.
   */
  async personalize({ onProgress, signal, events, ...options } = {}) {
    const list = events ?? (await this.history.list());
    const r = await this.#abortable('personalize', { ...options, events: list }, (p) => onProgress?.(p), signal, 'personalization aborted');
    const candidates = r.candidates.map((c) => ({ ...c, image: PmgImage.from(c.image) }));
    return { ...r, candidates };
  }

  /** A queued worker call that `signal` cancels (between steps, on the worker side). */
  async #abortable(op, args, onProgress, signal, abortMessage) {
    if (signal?.aborted) throw abortError(abortMessage, signal);
    let call = null;
    let stopped = false;
    const onAbort = () => {
      stopped = true;
      if (call) this.#t?.cancel(call.id);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await this.#queued(async () => {
        const err = this.#ready();
        if (err) throw err;
        if (stopped) throw abortError(abortMessage, signal);
        call = this.#t.call(op, args, { onProgress });
        this.#running = call.id;
        try {
          return await call;
        } catch (e) {
          throw e?.name === 'AbortError' && signal?.aborted ? abortError(abortMessage, signal, e) : e;
        } finally {
          this.#running = null;
        }
      });
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }


  /**
   * Thumbs up (`up = true`) or down on candidate `index` of a `personalize()` result. Stored in the
   * history on this device; resolves to the user's new profile `{ alpha, weightBonus, feedback }`.
   */
  async feedback(result, index, up) {
    if (!result || !Array.isArray(result.candidates) || !Number.isInteger(index) || index < 0 || index >= result.candidates.length) {
      throw new InvalidArgumentError('feedback(result, index, up): index must name a candidate of the result');
    }
    const plain = { ...result, candidates: result.candidates.map(({ image, ...c }) => c) };
    delete plain.ms;
    const event = await this._transport().call('feedbackEvent', { result: plain, index, up: Boolean(up) });
    await this.history.record(event);
    return this.profile();
  }

  /** The alpha (and weight bonuses) learned from the feedback in the stored history. */
  async profile() {
    const events = await this.history.list({ type: 'feedback' });
    return this._transport().call('profile', { events });
  }

  // Model work runs one call at a time, in call order.
  #queued(fn) {
    const turn = this.#queue.then(fn);
    this.#queue = turn.catch(() => {});
    return turn;
  }

  /** Token ids of `text` (special-token text such as `<|im_start|>` is recognised). */
  async tokenize(text) {
    return this.#call('tokenize', { text });
  }

  /**
   * The OpenAI chat-completions shape: `{ messages, stream, max_tokens | max_completion_tokens,
   * temperature, top_p, seed, stop, signal }`. Without `stream`, resolves to a `chat.completion`; with
   * `stream: true`, to an async iterable of `chat.completion.chunk`s.
   */
  async #completion({ messages, stream = false, max_tokens, max_completion_tokens, temperature, top_p, seed, stop, signal, ...rest } = {}) {
    const unknown = Object.keys(rest).filter((k) => !['model', 'n', 'user'].includes(k));
    if (unknown.length) throw new InvalidArgumentError(`chat.completions.create: unsupported option(s) ${unknown.join(', ')}`);
    if (rest.n !== undefined && rest.n !== 1) throw new InvalidArgumentError('chat.completions.create: only n = 1 is supported');
    const options = { maxTokens: max_completion_tokens ?? max_tokens, temperature, topP: top_p, seed, stop: typeof stop === 'string' ? [stop] : stop, signal };
    const g = this.#generate('chat', messages, options);
    const id = `chatcmpl-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
    const created = Math.floor(Date.now() / 1000);
    const model = rest.model ?? 'pmg';
    const reason = (r) => (r === 'max_tokens' || r === 'context_full' ? 'length' : 'stop');
    if (!stream) {
      const r = await g.result;
      return {
        id, object: 'chat.completion', created, model,
        choices: [{ index: 0, message: { role: 'assistant', content: r.text }, finish_reason: reason(r.finishReason), logprobs: null }],
        usage: { completion_tokens: r.tokens.length },
      };
    }
    const chunk = (delta, finish) => ({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }] });
    return {
      async *[Symbol.asyncIterator]() {
        yield chunk({ role: 'assistant', content: '' }, null);
        for await (const t of g) yield chunk({ content: t.text }, null);
        yield chunk({}, reason((await g.result).finishReason));
      },
    };
  }

  /** Continue a raw prompt (no chat template). */
  complete(prompt, options = {}) {
    return this.#generate('complete', prompt, options);
  }

  /** Free the model and its worker. Calls in flight reject with `DisposedError`; later calls too. */
  dispose() {
    if (this.#state === 'disposed') return;
    const t = this.#t;
    this.#state = 'disposed';
    this.#t = null;
    if (!t) return;
    if (t instanceof WorkerTransport) t.terminate();
    else {
      if (this.#running) t.cancel(this.#running);
      this.#queue.then(() => t.terminate());
    }
  }

  #ready() {
    if (this.#state === 'disposed') return new DisposedError('this Pmg was disposed');
    if (this.#state !== 'ready') return new NotLoadedError(this.#state === 'loading' ? 'the model is still loading: await load() first' : 'no model loaded: call load() first');
    return null;
  }

  async #call(op, args) {
    const err = this.#ready();
    if (err) throw err;
    return this.#t.call(op, args);
  }

  // Generations run one at a time, in call order; each has its own context (no shared history).
  #generate(kind, input, { signal, ...options } = {}) {
    for (const k of Object.keys(options)) if (options[k] === undefined) delete options[k];
    let call = null;
    let stopped = false;
    const stop = () => {
      stopped = true;
      if (call) this.#t?.cancel(call.id);
    };
    const start = (onToken) => {
      const err = this.#ready();
      if (err) return Promise.reject(err);
      const turn = this.#queue.then(async () => {
        const err = this.#ready();
        if (err) throw err;
        if (stopped) throw new AbortError('generation aborted');
        call = this.#t.call('generate', { kind, input, options }, { onToken });
        this.#running = call.id;
        try {
          return await call;
        } finally {
          this.#running = null;
        }
      });
      this.#queue = turn.catch(() => {});
      return turn;
    };
    return new Generation(start, stop, signal);
  }
}

function baseUrl() {
  return globalThis.document?.baseURI ?? globalThis.location?.href;
}

function dirUrl(base) {
  return new URL(base.endsWith('/') ? base : `${base}/`, baseUrl());
}

/** `AbortError` carrying the signal's reason (`e.reason`, and as `cause`). */
function abortError(message, signal, partialFrom) {
  const reason = signal?.reason;
  return new AbortError(message, { reason, cause: reason, ...(partialFrom?.partial ? { partial: partialFrom.partial } : {}) });
}

/**
 * Wraps `onProgress` so that every event also carries `fraction`: bytes arrived (per file, the
 * latest count) over `total`, the bytes this load fetches.
 */
function overallProgress(onProgress, total) {
  const loaded = {};
  return (p) => {
    if (p.phase === 'download') loaded[p.file ?? 'llm'] = p.loaded;
    const got = Object.values(loaded).reduce((a, b) => a + b, 0);
    onProgress({ ...p, fraction: total ? Math.min(1, got / total) : 0 });
  };
}

/**
 * URLs of the generator weights: under `base` when given (relative to the page), else the copies
 * shipped in this package (static URLs in models.js, which bundlers see).
 */
/**
 * `generator: { kind: 'sd', baseUrl, gguf?, vaeBaseUrl?, quantize?, size?, sha256? }` and `scorer: { kind: 'clip', baseUrl,
 * sha256? }`: folders of standard weights, each file fetched by its path under `baseUrl` (relative
 * to the page), cached, and checked against `sha256[path]` when given (`gguf`: a one-file
 * checkpoint's path there, read with the `tokenizer/` beside it). `kind: 'emoji'` (or none)
 * keeps the shipped generator or scorer.
 */
function resolveFolders(generator, scorer) {
  const folder = (o, kind, what) => {
    if (o === undefined || o === null || o.kind === 'emoji') return null;
    if (typeof o !== 'object' || o.kind !== kind) throw new InvalidArgumentError(`${what}.kind is '${kind}' or 'emoji'`);
    if (typeof o.baseUrl !== 'string' || !o.baseUrl) throw new InvalidArgumentError(`${what}.baseUrl: the folder's URL`);
    const sha256 = o.sha256 ?? {};
    if (typeof sha256 !== 'object') throw new InvalidArgumentError(`${what}.sha256 maps a file's path to its SHA-256`);
    return {
      baseUrl: String(dirUrl(o.baseUrl)),
      sha256,
      ...(o.vaeBaseUrl ? { vaeBaseUrl: String(dirUrl(o.vaeBaseUrl)) } : {}),
      ...(o.gguf !== undefined ? { gguf: ggufPath(o.gguf, what) } : {}),
      // Checked by the wasm loader against the checkpoint's sizes.
      ...(o.size !== undefined ? { size: o.size } : {}),
      // Checked by the wasm loader (its one list of precisions).
      ...(o.quantize !== undefined ? { quantize: o.quantize } : {}),
    };
  };
  return { sd: folder(generator, 'sd', 'generator'), clip: folder(scorer, 'clip', 'scorer') };
}

/** A GGUF checkpoint's path under the folder's URL. */
function ggufPath(path, what) {
  if (typeof path !== 'string' || !path || /^[a-z]+:|^\//i.test(path)) {
    throw new InvalidArgumentError(`${what}.gguf: the checkpoint's path under baseUrl, e.g. 'sd-turbo-q8_0.gguf'`);
  }
  return path;
}

function resolveGenerator(base) {
  const url = (f) => String(base ? new URL(f.file, dirUrl(base)) : f.url());
  return Object.fromEntries(Object.entries(generator.files).map(([k, f]) => [k, { url: url(f), sha256: f.sha256, bytes: f.bytes }]));
}

/**
 * `llm` is a manifest id or a URL (relative URLs resolve against the page, not the worker). A known id
 * downloads from its pinned URL, or `llmBaseUrl` + its file name when given.
 */
function resolveModel(llm, llmBaseUrl, sha256) {
  const known = models[llm];
  if (known) {
    if (llmBaseUrl) return { url: String(new URL(known.file, dirUrl(llmBaseUrl))), sha256: sha256 ?? known.sha256, bytes: known.bytes };
    return { url: known.url, sha256: sha256 ?? known.sha256, bytes: known.bytes, archive: known.archive };
  }
  if (typeof llm !== 'string' || !llm) throw new InvalidArgumentError('llm must be a model id or a URL');
  let url;
  try {
    url = new URL(llm, baseUrl());
  } catch {
    throw new InvalidArgumentError(`llm is neither a known model id (${Object.keys(models).join(', ')}) nor a URL: ${JSON.stringify(llm)}`);
  }
  if (!['http:', 'https:', 'blob:', 'data:'].includes(url.protocol)) throw new InvalidArgumentError(`unsupported model URL scheme: ${url.protocol}`);
  return { url: String(url), sha256 };
}
