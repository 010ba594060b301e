// Types of pmg-web's public API (src/index.js).

/** Where the model runs: `auto` takes WebGPU on a hardware adapter and the CPU (wasm) otherwise. */
export type Device = 'auto' | 'webgpu' | 'cpu';

/** Events reported while loading, in order: download (repeatedly), verify, cache, init, ready. */
export type LoadProgress =
  | { phase: 'download'; loaded: number; total: number; fromCache: boolean }
  | { phase: 'verify' }
  | { phase: 'cache'; stored: boolean; error?: PmgError }
  | { phase: 'init'; device: Device }
  | { phase: 'ready'; backend: 'webgpu' | 'cpu' };

export interface LoadOptions {
  /** A model id from `models` (default `'smollm2-135m-instruct-q4_1'`) or the URL of a GGUF file. */
  llm?: string;
  /** Default `'auto'`. `'webgpu'` rejects with `DeviceError` where WebGPU is unavailable. */
  device?: Device;
  /** Download, verification and initialisation progress. */
  onProgress?: (p: LoadProgress) => void;
  /** Aborting rejects `load()` with `AbortError`; the Pmg can then be loaded again. */
  signal?: AbortSignal;
  /** Expected hex SHA-256 of the file (known model ids bring their own). A mismatch rejects with `IntegrityError`. */
  sha256?: string;
  /** Serve a known model id from this base URL instead of its published URL (e.g. `'/models/'`). */
  modelBaseUrl?: string;
  /** Keep a copy in the Cache API so that a reload does not download again (default true). */
  cache?: boolean;
  /** Run the model in a dedicated Web Worker (default true). `false` runs it on the page. */
  worker?: boolean;
  /** Context length in tokens (default 2048, at most the model's training context). */
  nCtx?: number;
  /** Where `pmg_bg.wasm` is served, if not next to `pkg/pmg.js`. */
  wasmUrl?: string;
}

export interface LoadResult {
  info: ModelInfo;
  /** The bytes came from the persistent cache, not the network. */
  fromCache: boolean;
  /** A copy is in the persistent cache now. */
  cached: boolean;
  /** Why the copy could not be cached (e.g. `QuotaExceededError`); the model is loaded regardless. */
  cacheError?: PmgError;
}

export interface ModelInfo {
  package: 'pmg-web';
  backend: 'webgpu' | 'cpu';
  /** Adapter description, e.g. `"cpu (burn flex + pmg wasm simd128 kernels, 1 thread)"` or the GPU's name. */
  adapter: string;
  /** The WebGPU adapter is a software emulation (e.g. SwiftShader). */
  softwareAdapter: boolean;
  nCtx: number;
  config: {
    architecture: string;
    n_layer: number;
    n_embd: number;
    n_ff: number;
    n_head: number;
    n_head_kv: number;
    head_dim: number;
    rope_dim: number;
    rope_theta: number;
    rms_eps: number;
    n_ctx_train: number;
    vocab_size: number;
  };
  memory: {
    /** Quantized weights as stored in the GGUF. */
    weightBytes: number;
    /** One generation's key/value cache at `nCtx` (on the GPU for webgpu). */
    kvCacheBytes: number;
    /** Current size of the wasm linear memory. */
    wasmHeapBytes: number;
  };
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | (string & {});
  content: string;
}

export interface GenerateOptions {
  /** Default 256. */
  maxTokens?: number;
  /** 0 is greedy (the default). */
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  /** Seed of the sampler: the same seed and options give the same tokens. */
  seed?: number;
  /** Stop before any of these strings; they are not part of the output. */
  stop?: string[];
  /** Aborting stops the generation: iteration and `result` reject with `AbortError` (whose `partial` holds what came). */
  signal?: AbortSignal;
}

export interface Token {
  /** Text to append (may be empty while a multi-byte character or a possible stop string is held back). */
  text: string;
  id: number;
}

export type FinishReason = 'end_of_turn' | 'max_tokens' | 'stop_string' | 'context_full' | 'cancelled';

export interface GenerationResult {
  text: string;
  tokens: number[];
  finishReason: FinishReason;
}

/** Streamed tokens of one generation. Breaking out of `for await` stops it. */
export declare class Generation implements AsyncIterable<Token> {
  /** The whole answer once finished. */
  readonly result: Promise<GenerationResult>;
  /** Shorthand for `(await result).text`. */
  text(): Promise<string>;
  [Symbol.asyncIterator](): AsyncIterator<Token>;
}

export declare class Pmg {
  /** Create and load in one step. */
  static load(options?: LoadOptions): Promise<Pmg>;
  readonly state: 'idle' | 'loading' | 'ready' | 'disposed';
  /** Download (or take from the cache), verify and load the model. Call once. */
  load(options?: LoadOptions): Promise<LoadResult>;
  info(): Promise<ModelInfo>;
  tokenize(text: string): Promise<number[]>;
  /** Chat with the model's chat template. Generations run one at a time, in call order. */
  chat(messages: ChatMessage[], options?: GenerateOptions): Generation;
  /** Continue a raw prompt. */
  complete(prompt: string, options?: GenerateOptions): Generation;
  /** Free the model and its worker; later calls reject with `DisposedError`. */
  dispose(): void;
}

export interface KnownModel {
  file: string;
  bytes: number;
  sha256: string;
  license: string;
  url: string;
}
export declare const models: Record<string, KnownModel>;
export declare const defaultLlm: string;

/** Name of the Cache API bucket holding models. */
export declare const CACHE_NAME: string;
/** Models in the persistent cache. */
export declare function cachedModels(): Promise<{ url: string; bytes: number | null }[]>;
/** Remove one cached model by URL, or all of them. */
export declare function clearModelCache(url?: string): Promise<boolean>;

/** Base class of every error pmg-web throws; `name` tells the kind. */
export declare class PmgError extends Error {
  constructor(message: string, details?: object);
}
export declare class NotLoadedError extends PmgError {}
export declare class DisposedError extends PmgError {}
export declare class AbortError extends PmgError {
  name: 'AbortError';
  /** What a generation produced before it was aborted. */
  partial?: GenerationResult;
}
export declare class NetworkError extends PmgError {
  /** HTTP status, 0 for a network failure. */
  status: number;
  url: string;
}
export declare class IntegrityError extends PmgError {
  expected?: string;
  actual?: string;
}
export declare class QuotaExceededError extends PmgError {}
export declare class DeviceError extends PmgError {}
export declare class GgufError extends PmgError {}
export declare class ModelError extends PmgError {}
export declare class TokenizerError extends PmgError {}
export declare class InvalidArgumentError extends PmgError {}
export declare class RuntimeError extends PmgError {}
