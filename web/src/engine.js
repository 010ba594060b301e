// The part of pmg-web that owns the wasm module and the loaded model. It runs inside the worker
// (worker.js) by default, or on the page itself with `load({ worker: false })`.

import init, { Llm, sha256Hex as wasmSha256Hex } from '../pkg/pmg.js';
import { AbortError, DisposedError, InvalidArgumentError, NotLoadedError, toPmgError } from './errors.js';
import { fetchModel } from './loader.js';

let wasmReady = null;
function initWasm(wasmUrl) {
  wasmReady ??= init(wasmUrl ? { module_or_path: wasmUrl } : undefined).catch((e) => {
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

const GEN_KEYS = ['maxTokens', 'temperature', 'topK', 'topP', 'repetitionPenalty', 'seed', 'stop'];

export class Engine {
  #llm = null;
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
  async generate(kind, input, opts = {}, onToken = () => {}, isCancelled = () => false) {
    const llm = this.#model();
    const options = {};
    for (const k of GEN_KEYS) if (opts[k] !== undefined && opts[k] !== null) options[k] = opts[k];
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
