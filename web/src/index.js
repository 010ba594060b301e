// pmg-web: personalized generation in the browser. Entry point of the npm package.
//
//   import { Pmg } from 'pmg-web';
//   const pmg = await Pmg.load({ device: 'auto', onProgress: (p) => console.log(p) });
//   for await (const t of pmg.chat([{ role: 'user', content: 'Hi!' }], { maxTokens: 64 })) out.textContent += t.text;
//
// The model runs in a dedicated Web Worker (worker.js) unless `worker: false`; see README.md for the API.

import { Engine, dispatch } from './engine.js';
import {
  AbortError, DisposedError, InvalidArgumentError, NotLoadedError, RuntimeError, errorFromJSON, toPmgError,
} from './errors.js';
import { defaultLlm, generator, models } from './models.js';

export * from './errors.js';
export { cachedModels, clearModelCache, CACHE_NAME } from './loader.js';
export { defaultLlm, generator, models } from './models.js';

const DEVICES = ['auto', 'webgpu', 'cpu'];

/** Talks to the engine in a dedicated worker. */
class WorkerTransport {
  #worker;
  #next = 1;
  #pending = new Map();
  #dead = null;

  constructor() {
    this.#worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'pmg' });
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
        if (this.#aborted) throw new AbortError('generation aborted', { partial: r });
        return r;
      },
      (e) => {
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
          throw new AbortError('generation aborted');
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
  #useWorker;
  #state = 'idle'; // idle | loading | ready | disposed
  #queue = Promise.resolve();
  #running = null;

  /**
   * `worker: false` runs everything on the page. The behaviour history (`pmg.history`) is usable
   * right away; the model methods need `load()` first.
   */
  constructor({ worker = true } = {}) {
    this.#useWorker = worker;
    this.history = new History(this);
  }

  /** Shorthand for `new Pmg({ worker }).load(options)`. */
  static async load(options = {}) {
    const pmg = new Pmg({ worker: options.worker ?? true });
    await pmg.load(options);
    return pmg;
  }

  /** The transport, started on first use (the worker is also where the history is stored). */
  _transport() {
    if (this.#state === 'disposed') throw new DisposedError('this Pmg was disposed');
    this.#t ??= this.#useWorker ? new WorkerTransport() : new DirectTransport();
    return this.#t;
  }

  /** `'idle' | 'loading' | 'ready' | 'disposed'`. */
  get state() {
    return this.#state;
  }

  async load(options = {}) {
    const { llm = defaultLlm, device = 'auto', onProgress = () => {}, signal, cache = true, nCtx, modelBaseUrl, generatorBaseUrl, wasmUrl } = options;
    if (this.#state === 'disposed') throw new DisposedError('this Pmg was disposed');
    if (this.#state !== 'idle') throw new InvalidArgumentError(`load() was already called (state: ${this.#state})`);
    if (!DEVICES.includes(device)) throw new InvalidArgumentError(`device must be one of ${DEVICES.join(', ')}, not ${JSON.stringify(device)}`);
    if (signal?.aborted) throw new AbortError('model load aborted');
    const model = resolveModel(llm, modelBaseUrl, options.sha256);
    const worker = this.#useWorker;
    const t = this._transport();
    this.#state = 'loading';
    const args = { ...model, device, cache, nCtx, wasmUrl: wasmUrl && String(new URL(wasmUrl, baseUrl())), generator: resolveGenerator(generatorBaseUrl ?? modelBaseUrl) };
    let onAbort;
    const aborted = new Promise((_, reject) => {
      onAbort = () => {
        // A worker can be stopped anywhere, even inside wasm; the page's own engine stops at its next check.
        if (worker) t.terminate(new AbortError('model load aborted'));
        reject(new AbortError('model load aborted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    aborted.catch(() => {});
    try {
      const r = await Promise.race([t.call('load', args, { onProgress, signal }), aborted]);
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
    return this.#queued(() => this.#call('preferences', { options, events }));
  }

  /** Keywords describing one item `{ id, title, category?, tags?, description? }` (PMG's target keywords). */
  async itemKeywords(item, n = 10, options = {}) {
    return this.#queued(() => this.#call('itemKeywords', { item, n, options }));
  }

  /**
   * Generate emoji-style images for a text prompt on this device: `{ images: ImageData[], seed,
   * steps, guidance, ms }`. Options: `seed` (0), `steps` (20, 1..50), `guidance` (3),
   * `sampler` ('ddim' | 'dpm-solver2m'), `n` (1..16 images, seeds seed..seed+n-1),
   * `onStep(step, total)`, `onProgress(p)` (generator download on first use), `signal`.
   * The same seed gives the same image on every backend (within rounding).
   */
  async generateImage({ onStep, onProgress, signal, ...options } = {}) {
    const progress = (p) => (p.phase === 'denoise' ? onStep?.(p.step, p.total) : onProgress?.(p));
    return this.#abortable('generateImage', options, progress, signal, 'image generation aborted');
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
  async personalize({ onProgress, signal, ...options } = {}) {
    return this.#abortable('personalize', options, (p) => onProgress?.(p), signal, 'personalization aborted');
  }

  /** A queued worker call that `signal` cancels (between steps, on the worker side). */
  async #abortable(op, args, onProgress, signal, abortMessage) {
    if (signal?.aborted) throw new AbortError(abortMessage);
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
        if (stopped) throw new AbortError(abortMessage);
        call = this.#t.call(op, args, { onProgress });
        this.#running = call.id;
        try {
          return await call;
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
    return this._transport().call('feedback', { result: plain, index, up: Boolean(up) });
  }

  /** The alpha (and weight bonuses) learned from the feedback in the stored history. */
  async profile() {
    return this._transport().call('profile', {});
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

  /** Chat with the model: `messages` is `[{ role: 'system' | 'user' | 'assistant', content }]`. */
  chat(messages, options = {}) {
    return this.#generate('chat', messages, options);
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

/** The behaviour history on this device (IndexedDB), available as `pmg.history`. */
class History {
  #pmg;
  constructor(pmg) {
    this.#pmg = pmg;
  }
  #call(op, args = {}) {
    try {
      return this.#pmg._transport().call(op, args);
    } catch (e) {
      return Promise.reject(e);
    }
  }
  /**
   * Record an event (`{ type, at, ... }`; `at` defaults to now): rejects with `HistoryError` if it is
   * invalid. An array records every valid event in one transaction and reports the others.
   */
  async record(event) {
    const stamp = (e) => (e && typeof e === 'object' && e.at === undefined ? { ...e, at: Date.now() } : e);
    if (Array.isArray(event)) return this.#call('history.record', { input: event.map(stamp), single: false });
    await this.#call('history.record', { input: stamp(event), single: true });
  }
  /** All events, oldest first. */
  list() {
    return this.#call('history.list');
  }
  /** The history as JSON text: `{ "version": 1, "events": [...] }`. */
  export() {
    return this.#call('history.export');
  }
  /** Add the valid events of an export (JSON text or object); returns `{ accepted, rejected }`. */
  import(data) {
    return this.#call('history.record', { input: data, single: false });
  }
  /** Delete every event. */
  clear() {
    return this.#call('history.clear');
  }
  /** Get (no argument) or set `{ maxEvents, maxAgeMs }`; setting applies it and returns how many events were dropped. */
  retention(policy) {
    return this.#call('history.retention', { policy });
  }
}

function baseUrl() {
  return globalThis.document?.baseURI ?? globalThis.location?.href;
}

/**
 * URLs of the generator weights: under `base` when given (relative to the page), else the copies
 * shipped in this package (`pmg-web/models/`).
 */
function resolveGenerator(base) {
  const dir = base ? new URL(base.endsWith('/') ? base : `${base}/`, baseUrl()) : new URL('../models/', import.meta.url);
  const file = (f) => ({ url: String(new URL(f.file, dir)), sha256: f.sha256, bytes: f.bytes });
  return Object.fromEntries(Object.entries(generator.files).map(([k, f]) => [k, file(f)]));
}

/** `llm` is a manifest id or a URL (relative URLs resolve against the page, not the worker). */
function resolveModel(llm, modelBaseUrl, sha256) {
  const known = models[llm];
  if (known) {
    const url = modelBaseUrl ? new URL(known.file, new URL(modelBaseUrl.endsWith('/') ? modelBaseUrl : `${modelBaseUrl}/`, baseUrl())) : new URL(known.url);
    return { url: String(url), sha256: sha256 ?? known.sha256, bytes: known.bytes };
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
