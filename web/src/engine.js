// The part of pmg-web that owns the wasm module and the loaded model. It runs inside the worker
// (worker.js) by default, or on the page itself with `load({ worker: false })`.

import init, { Llm, sha256Hex as wasmSha256Hex } from '../pkg/pmg.js';
import { AbortError, DisposedError, InvalidArgumentError, NotLoadedError, toPmgError } from './errors.js';
import { fetchModel } from './loader.js';

let wasmReady = null;
function initWasm(wasmUrl) {
  // A static URL next to the glue code, so that bundlers emit the wasm file with the bundle.
  wasmReady ??= init({ module_or_path: wasmUrl ?? new URL('../pkg/pmg_bg.wasm', import.meta.url) }).catch((e) => {
    wasmReady = null;
    throw e;
  });
  return wasmReady;
}

/** Resolves after the event loop has handled pending messages (a macrotask, not clamped like setTimeout). */
function nextTask() {
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => {
      ch.port1.close();
      resolve();
    };
    ch.port2.postMessage(0);
  });
}

/** A target picture as PNG bytes for the wasm side: PNG bytes (Uint8Array / ArrayBuffer), a PNG Blob, or undefined. */
async function pngBytes(image) {
  if (image === undefined || image === null) return undefined;
  if (image instanceof Uint8Array) return image;
  if (image instanceof ArrayBuffer) return new Uint8Array(image);
  if (typeof Blob !== 'undefined' && image instanceof Blob) return new Uint8Array(await image.arrayBuffer());
  throw new InvalidArgumentError('target.image must be PNG bytes (Uint8Array or ArrayBuffer) or a PNG Blob');
}

export class Engine {
  #llm = null;
  #generatorFiles = null; // { autoencoder, denoiser, scorer, softPrompt }: { url, sha256, bytes }, from load()
  #sd = null; // { baseUrl, gguf?, vaeBaseUrl?, quantize?, size?, sha256 }: a Stable Diffusion folder in place of the shipped generator
  #clip = null; // { baseUrl, sha256 }: a CLIP folder in place of the shipped scorer
  #loaded = new Map(); // 'generator' | 'scorer' | 'softPrompt' -> promise: weights fetched and loaded into #llm
  #cache = true;
  #disposed = false;
  #failed = null;

  /**
   * @param {{ url: string, sha256?: string, bytes?: number, device: string, nCtx?: number, cache?: boolean, wasmUrl?: string }} o
   * @param {(p: object) => void} onProgress
   * @param {AbortSignal} [signal]
   */
  async load(o, onProgress = () => {}, signal) {
    this.#check(false);
    if (this.#llm) throw new InvalidArgumentError('a model is already loaded; dispose() first');
    const wasm = initWasm(o.wasmUrl); // compile the module while the model downloads
    const got = await fetchModel({ ...o, onProgress, signal, digestFallback: async (b) => (await wasm, wasmSha256Hex(b)) });
    await wasm;
    if (signal?.aborted) throw new AbortError('model load aborted');
    onProgress({ phase: 'init', device: o.device });
    let llm;
    try {
      llm = await Llm.load(got.bytes, o.device, o.nCtx);
    } catch (e) {
      throw this.#fail(e);
    }
    if (signal?.aborted || this.#disposed) {
      llm.free();
      throw this.#disposed ? new DisposedError('disposed while loading') : new AbortError('model load aborted');
    }
    this.#llm = llm;
    this.#generatorFiles = o.generator ?? null;
    this.#sd = o.sd ?? null;
    this.#clip = o.clip ?? null;
    this.#cache = o.cache ?? true;
    const info = this.info();
    onProgress({ phase: 'ready', backend: info.backend });
    return { info, fromCache: got.fromCache, cached: got.cached, cacheError: got.cacheError };
  }

  info() {
    return { ...this.#model().info(), package: 'pmg-web' };
  }

  tokenize(text) {
    if (typeof text !== 'string') throw new InvalidArgumentError('tokenize() takes a string');
    return Array.from(this.#model().tokenize(text));
  }

  /**
   * Run one generation. `onToken(text, id)` gets every token; `isCancelled()` is polled between tokens.
   * @param {'chat' | 'complete'} kind
   */
  async generate(kind, input, options = {}, onToken = () => {}, isCancelled = () => false) {
    const llm = this.#model(); // the binding checks `options` against GenerateOptions (options.d.ts)
    if (kind === 'chat' && !Array.isArray(input)) throw new InvalidArgumentError('chat() takes an array of { role, content } messages');
    if (kind === 'complete' && typeof input !== 'string') throw new InvalidArgumentError('complete() takes a string prompt');
    const cb = async (text, id) => {
      onToken(text, id);
      await nextTask(); // let cancel messages (and the page, without a worker) in between tokens
      return !isCancelled();
    };
    let r;
    try {
      r = kind === 'chat' ? await llm.chat(input, options, cb) : await llm.complete(input, options, cb);
    } catch (e) {
      throw this.#fail(e);
    }
    if (r.finishReason === 'cancelled') throw new AbortError('generation aborted', { partial: r });
    return r;
  }

  /** Preference keywords from `events` (the page reads them from its `History`; invalid ones are skipped). */
  async preferences(options = {}, events = []) {
    const llm = this.#model();
    try {
      return await llm.preferences(JSON.stringify(events), options);
    } catch (e) {
      throw this.#fail(e);
    }
  }

  async itemKeywords(item, n = 10, options = {}) {
    const llm = this.#model();
    try {
      return await llm.itemKeywords(JSON.stringify(item), n, options);
    } catch (e) {
      throw this.#fail(e);
    }
  }

  #fetchWeights(name, onProgress, signal) {
    return fetchModel({
      ...this.#generatorFiles[name],
      cache: this.#cache,
      signal,
      onProgress: (p) => onProgress({ ...p, file: name }),
      digestFallback: wasmSha256Hex,
    });
  }

  /** Run `load` once per `name`; a failure (e.g. a failed download) is forgotten so it may be retried. */
  async #once(name, load) {
    if (!this.#loaded.has(name)) this.#loaded.set(name, load());
    try {
      return await this.#loaded.get(name);
    } catch (e) {
      this.#loaded.delete(name);
      throw e;
    }
  }

  /**
   * A folder's files by path (`paths` under `base`), each fetched or taken from the cache and
   * checked against `sha256[path]` when given; a file the server does not have (404) is `null`
   * (the binding knows which are optional).
   */
  async #folder(base, paths, sha256, onProgress, signal) {
    const files = {};
    await Promise.all(paths.map(async (path) => {
      try {
        const got = await fetchModel({ url: String(new URL(path, base)), sha256: sha256?.[path], cache: this.#cache, signal, onProgress: (p) => onProgress({ ...p, file: path }), digestFallback: wasmSha256Hex });
        files[path] = got.bytes;
      } catch (e) {
        if (e?.name === 'NetworkError' && e.status === 404) files[path] = null;
        else throw e;
      }
    }));
    return files;
  }

  /** Fetch (or take from the cache) and load the generator weights, once. */
  async #generator(onProgress, signal) {
    const llm = this.#model();
    if (this.#sd) {
      const sd = this.#sd;
      return this.#once('generator', async () => {
        const names = Llm.sdFiles();
        const paths = sd.gguf ? [sd.gguf, ...names.gguf] : names.model;
        const files = await this.#folder(sd.baseUrl, paths, sd.sha256, onProgress, signal);
        const vae = sd.vaeBaseUrl ? await this.#folder(sd.vaeBaseUrl, names.vae, sd.sha256, onProgress, signal) : undefined;
        try {
          return llm.loadSd(files, vae, { quantize: sd.quantize, gguf: sd.gguf, size: sd.size });
        } catch (e) {
          throw this.#fail(e);
        }
      });
    }
    if (!this.#generatorFiles) throw new InvalidArgumentError('no generator files configured');
    return this.#once('generator', async () => {
      const [ae, dn] = await Promise.all([this.#fetchWeights('autoencoder', onProgress, signal), this.#fetchWeights('denoiser', onProgress, signal)]);
      try {
        return llm.loadGenerator(ae.bytes, dn.bytes);
      } catch (e) {
        throw this.#fail(e);
      }
    });
  }

  /** The scorer: the configured CLIP folder, else the shipped scorer's weights, once. */
  async #scorer(onProgress, signal) {
    if (!this.#clip) return this.#extra('scorer', 'loadScorer', onProgress, signal);
    const llm = this.#model();
    const clip = this.#clip;
    return this.#once('scorer', async () => {
      const files = await this.#folder(clip.baseUrl, Llm.clipFiles(), clip.sha256, onProgress, signal);
      try {
        return llm.loadClip(files);
      } catch (e) {
        throw this.#fail(e);
      }
    });
  }

  /** The weights `file` loaded by `llm[method]`, once (only `personalize` needs the scorer and the soft prompt). */
  async #extra(file, method, onProgress, signal) {
    const llm = this.#model();
    if (!this.#generatorFiles?.[file]) throw new InvalidArgumentError(`no ${file} file configured`);
    return this.#once(file, async () => {
      const w = await this.#fetchWeights(file, onProgress, signal);
      try {
        return llm[method](w.bytes);
      } catch (e) {
        throw this.#fail(e);
      }
    });
  }

  /**
   * PMG on the stored history (or `o.events`): progress `{ phase: 'download', file, ... }` on first
   * use, then `{ phase: 'extract' | 'encode' | 'denoise' | 'score', step?, steps? }`. Candidates
   * come back with `image` as `ImageData`.
   */
  async personalize(o, onProgress = () => {}, isCancelled = () => false, signal) {
    const { title, image } = typeof o?.target === 'string' ? { title: o.target } : (o?.target ?? {});
    if (typeof title !== 'string' || !title.trim()) throw new InvalidArgumentError('personalize() needs a non-empty target (a title, or { title, image })');
    const png = await pngBytes(image);
    const llm = this.#model();
    const { target: _target, events = [], ...options } = o;
    for (const k of Object.keys(options)) if (options[k] === undefined || options[k] === null) delete options[k];
    const parts = ['generator', 'scorer'];
    if (options.embeddings ?? Llm.personalizeDefaults().embeddings) parts.push('softPrompt');
    await this.preload(parts, onProgress, signal);
    const t0 = performance.now();
    let r;
    try {
      r = await llm.personalize(JSON.stringify(events), title, png, options, async (p) => {
        onProgress({ phase: p.stage, ...(p.step === undefined ? {} : { step: p.step, total: p.steps }) });
        await nextTask(); // let a cancel message in between stages and steps
        return !isCancelled();
      });
    } catch (e) {
      throw this.#fail(e);
    }
    for (const c of r.candidates) c.image = new ImageData(new Uint8ClampedArray(c.image.rgba.buffer, c.image.rgba.byteOffset, c.image.rgba.length), c.image.width, c.image.height);
    r.ms = performance.now() - t0;
    return r;
  }

  /** The history event for a thumbs up/down on candidate `index` of a personalize result (the page records it). */
  async feedbackEvent(result, index, up) {
    await initWasm();
    const plain = JSON.stringify(result, (k, v) => (k === 'image' || k === 'ms' ? undefined : v));
    try {
      return Llm.feedbackEvent(plain, index, Boolean(up), Date.now());
    } catch (e) {
      throw toPmgError(e);
    }
  }

  /** `{ alpha, weightBonus, feedback }` learned from the feedback in `events`. */
  async profile(events = []) {
    await initWasm();
    try {
      return Llm.profile(JSON.stringify(events));
    } catch (e) {
      throw toPmgError(e);
    }
  }

  /**
   * Fetch and load generator parts (each once): `names` of 'generator', 'scorer', 'softPrompt'.
   * `personalize` loads what it needs through here; `load({ preload })` calls it ahead of use.
   */
  async preload(names, onProgress = () => {}, signal) {
    const loads = { generator: () => this.#generator(onProgress, signal), scorer: () => this.#scorer(onProgress, signal), softPrompt: () => this.#extra('softPrompt', 'loadSoftPrompt', onProgress, signal) };
    for (const n of names) if (!loads[n]) throw new InvalidArgumentError(`preload: unknown part ${JSON.stringify(n)} (generator, scorer, softPrompt)`);
    await Promise.all(names.map((n) => loads[n]()));
  }

  /**
   * Generate images for `o.prompt`. Progress: `{ phase: 'download', file, ... }` while the
   * generator weights load (first call only), then `{ phase: 'denoise', step, total }`.
   */
  async generateImage(o, onProgress = () => {}, isCancelled = () => false, signal) {
    if (typeof o?.prompt !== 'string' || !o.prompt.trim()) throw new InvalidArgumentError('generateImage() needs a non-empty prompt');
    const llm = this.#model();
    await this.#generator(onProgress, signal);
    const { prompt: _prompt, ...options } = o; // checked by the binding against ImageOptions (options.d.ts)
    const t0 = performance.now();
    let r;
    try {
      r = await llm.generateImage(o.prompt, options, async (step, total) => {
        onProgress({ phase: 'denoise', step, total });
        await nextTask(); // let a cancel message in between steps
        return !isCancelled();
      });
    } catch (e) {
      throw this.#fail(e);
    }
    const images = r.images.map((im) => new ImageData(new Uint8ClampedArray(im.rgba.buffer, im.rgba.byteOffset, im.rgba.length), im.width, im.height));
    return { images, seed: r.seed, steps: r.steps, guidance: r.guidance, strength: r.strength, references: r.references, ms: performance.now() - t0 };
  }

  dispose() {
    this.#disposed = true;
    this.#llm?.free();
    this.#llm = null;
  }

  #model() {
    this.#check(true);
    return this.#llm;
  }

  #check(needModel) {
    if (this.#failed) throw new DisposedError(`the runtime failed earlier and was shut down: ${this.#failed.message}`);
    if (this.#disposed) throw new DisposedError('this model was disposed');
    if (needModel && !this.#llm) throw new NotLoadedError('no model loaded: call load() first');
  }

  // A trap (panic) leaves the wasm instance unusable: refuse further calls with a clear error.
  #fail(e) {
    const err = toPmgError(e);
    if (err.name === 'RuntimeError') {
      this.#failed = err;
      this.#llm = null;
    }
    return err;
  }
}

/**
 * Run one operation of the worker protocol on `engine` (shared by the worker and by `worker: false`).
 * `handlers`: { onProgress, onToken, isCancelled, signal }.
 */
export async function dispatch(engine, op, args, { onProgress, onToken, isCancelled, signal } = {}) {
  switch (op) {
    case 'load': return engine.load(args, onProgress, signal);
    case 'info': return engine.info();
    case 'tokenize': return engine.tokenize(args.text);
    case 'generate': return engine.generate(args.kind, args.input, args.options, onToken, isCancelled);
    case 'preferences': return engine.preferences(args.options, args.events);
    case 'itemKeywords': return engine.itemKeywords(args.item, args.n, args.options);
    case 'generateImage': return engine.generateImage(args, onProgress, isCancelled, signal);
    case 'personalize': return engine.personalize(args, onProgress, isCancelled, signal);
    case 'preload': return engine.preload(args.names, onProgress, signal);
    case 'feedbackEvent': return engine.feedbackEvent(args.result, args.index, args.up);
    case 'profile': return engine.profile(args.events);
    case 'dispose': return engine.dispose();
    default: throw new InvalidArgumentError(`unknown operation ${op}`);
  }
}
