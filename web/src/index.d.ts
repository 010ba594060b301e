// Types of pmg-web's public API (src/index.js). The option shapes the wasm binding reads come from
// their Rust definitions (options.d.ts, generated); here they are partial and joined with the
// JavaScript-only fields (callbacks, signals, events).

import type {
  ExtractOptions,
  GenerateOptions as GenerateCore,
  ImageOptions,
  PersonalizeOptions as PersonalizeCore,
  RenderOptions,
} from './options.js';
export type {
  Domain,
  ExtractOptions,
  ImageOptions,
  PromptMode,
  RenderOptions,
  SampleOptions,
  SamplerKind,
  SamplingParams,
  Weighting,
} from './options.js';

/** Where the model runs: `auto` takes WebGPU on a hardware adapter and the CPU (wasm) otherwise. */
export type Device = 'auto' | 'webgpu' | 'cpu';

/**
 * Events reported while loading, in order: download (repeatedly), verify, (unpack), cache, init, ready.
 * From `load()`, each also carries `file` ('llm' or a generator part) and `fraction`: the share of all
 * bytes this load fetches that has arrived.
 */
export type LoadProgress = (
  | { phase: 'download'; loaded: number; total: number; fromCache: boolean }
  | { phase: 'verify' }
  | { phase: 'unpack'; member: string }
  | { phase: 'cache'; stored: boolean; error?: PmgError }
  | { phase: 'init'; device: Device }
  | { phase: 'ready'; backend: 'webgpu' | 'cpu' }
) & { file?: 'llm' | 'autoencoder' | 'denoiser' | 'scorer' | 'softPrompt'; fraction?: number };

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
  /** Serve a known LLM id from this base URL (its `file` name under it) instead of its pinned download, e.g. `'/pmg/'` after `npx pmg-web assets public/pmg`. */
  llmBaseUrl?: string;
  /** Keep a copy in the Cache API so that a reload does not download again (default true). */
  cache?: boolean;
  /** Run the model in the package's Web Worker (default true), on the page (`false`), or in your own `Worker` (or worker script URL) running `pmg-web/worker`. */
  worker?: boolean | Worker | URL | string;
  /** The history this Pmg reads: a `History`, or the options of one (`{ user }`). */
  history?: History | { user?: string };
  /** Fetch and load these generator parts during `load()` rather than on first use (`true`: all of them). */
  preload?: boolean | ('generator' | 'scorer' | 'softPrompt')[];
  /** Context length in tokens (default 2048, at most the model's training context). */
  nCtx?: number;
  /** Where `pmg_bg.wasm` is served, if not next to `pkg/pmg.js`. */
  wasmUrl?: string;
  /**
   * Base URL of the image generator's and scorer's weights (`generator.files`). Default: the copies
   * shipped in this package (`pmg-web/models/`, which bundlers emit with the app). They are fetched
   * on first use, or during `load()` with `preload`.
   */
  generatorBaseUrl?: string;
  /**
   * A Stable Diffusion checkpoint in diffusers' folder layout (SD 1.x/2.x, SD-Turbo, BK-SDM) to draw
   * with instead of the emoji generator: every file fetched by its path under `baseUrl`, cached,
   * and checked against `sha256[path]` when given. `gguf`: instead, a one-file GGUF checkpoint
   * as stable-diffusion.cpp converts them (its path under `baseUrl`), with CLIP's tokenizer files
   * in `tokenizer/` beside it. `vaeBaseUrl`: an autoencoder folder (TAESD) decoding in place of
   * the checkpoint's. `quantize`: the UNet's and text encoder's linear layers held
   * as f32 (default) or quantized on load to Q8_0 / Q4_0 (about 27% / 14% of their f32 bytes).
   * PMG's implicit rows need a soft prompt trained for this generator's width: personalize with
   * `embeddings: false` otherwise.
   */
  generator?:
    | { kind: 'emoji' }
    | {
        kind: 'sd';
        baseUrl: string;
        gguf?: string;
        vaeBaseUrl?: string;
        quantize?: 'f32' | 'q8_0' | 'q4_0';
        /** The image side drawn (default: the checkpoint's own, or 512: a GGUF file does not say). */
        size?: number;
        sha256?: Record<string, string>;
      };
  /** A transformers CLIPModel folder scoring PMG's candidates instead of the shipped scorer (needed with `generator.kind === 'sd'`). */
  scorer?: { kind: 'emoji' } | { kind: 'clip'; baseUrl: string; sha256?: Record<string, string> };
}

/** `seed`, `n` and the sampling options (`steps`, `guidance`, `sampler`, `strength`), documented in options.d.ts. */
export interface GenerateImageOptions extends Partial<ImageOptions> {
  /** Text describing the picture, e.g. `'smiling cat face'`. */
  prompt: string;
  /** Called after each denoising step. */
  onStep?: (step: number, total: number) => void;
  /** Download progress of the generator weights (first call only). */
  onProgress?: (p: LoadProgress & { file?: 'autoencoder' | 'denoiser' }) => void;
  /** Aborting rejects with `AbortError` (checked between denoising steps). */
  signal?: AbortSignal;
}

/** A catalog item with its own picture: candidates start from the picture, so the item stays recognisable. */
export interface PictureTarget {
  /** The item's title, e.g. `'birthday cake'`. */
  title: string;
  /** The item's picture as PNG (any size; scaled to 64x64). */
  image?: Uint8Array | ArrayBuffer | Blob;
}

/**
 * Every field but `target` is optional (the defaults are listed in options.d.ts). `alpha`,
 * `weights`, `seeds`, `seed`, `weighting`, `preferenceKeywords`, `keywords`, `embeddings`,
 * `imageStrengths` and the sampling options (`steps`, `guidance`, `sampler`, `strength`) are
 * documented in options.d.ts; `extract` takes the options of `preferences()`.
 */
export interface PersonalizeOptions extends Partial<Omit<PersonalizeCore, 'extract'>> {
  /** What to make: a title such as `'birthday cake'`, or an item with its picture. */
  target: string | PictureTarget;
  /** How the preference keywords are extracted (as for `preferences()`). */
  extract?: Partial<Omit<ExtractOptions, 'render'>> & { render?: Partial<RenderOptions> };
  /** Use these events instead of the stored history. */
  events?: HistoryEvent[];
  onProgress?: (p: PersonalizeProgress) => void;
  /** Aborting rejects with `AbortError` (checked between stages and denoising steps). */
  signal?: AbortSignal;
}

export type PersonalizeProgress =
  | (LoadProgress & { phase?: 'download'; file?: 'autoencoder' | 'denoiser' | 'scorer' | 'softPrompt' })
  | { phase: 'extract' | 'encode' | 'score' }
  | { phase: 'denoise'; step: number; total: number };

/** A generated picture: `ImageData` that encodes itself. */
export declare class PmgImage extends ImageData {
  static from(image: ImageData): PmgImage;
  /** PNG (or `type`) Blob, `scale` (1..32) times larger, nearest-neighbour unless `smooth`. */
  toBlob(options?: ImageExportOptions): Promise<Blob>;
  /** PNG file bytes. */
  toPng(options?: { scale?: number; smooth?: boolean }): Promise<Uint8Array>;
  toCanvas(options?: { scale?: number; smooth?: boolean }): OffscreenCanvas | HTMLCanvasElement;
}
export interface ImageExportOptions {
  scale?: number;
  smooth?: boolean;
  type?: string;
  quality?: number;
}
/** Encode any `ImageData` as an image Blob. */
export declare function imageToBlob(image: ImageData, options?: ImageExportOptions): Promise<Blob>;

export interface Candidate {
  /** 64x64 RGBA. */
  image: PmgImage;
  /** Preference weight w (0: target only). */
  weight: number;
  seed: number;
  /** The share of the noise schedule the run took; below 1 it started from a picture (the target's own, or the nearest training emoji). */
  strength: number;
  /** The conditioning as text. */
  prompt: string;
  /** ln s(image, target), <= 0. */
  accuracy: number;
  /** ln s(image, preference keywords), <= 0. */
  preference: number;
  /** (1 - alpha) accuracy + alpha preference (+ the learned bonus of its weight). */
  score: number;
}

export interface Personalized {
  /** Index of the chosen candidate. */
  chosen: number;
  candidates: Candidate[];
  preferences: Preferences;
  /** The preference keywords in the conditioning. */
  usedKeywords: string[];
  /** Whether the implicit-preference rows were in the conditioning. */
  usedEmbeddings: boolean;
  target: string;
  alpha: number;
  ms: number;
}

/** What this user's feedback taught (replayed from the stored history). */
export interface Profile {
  alpha: number;
  /** Score bonus per preference weight, within ±0.02. */
  weightBonus: Record<string, number>;
  /** Feedback events read. */
  feedback: number;
}

export interface GeneratedImages {
  /** 64x64 RGBA images with transparency; draw with `ctx.putImageData(img, x, y)`. */
  images: PmgImage[];
  seed: number;
  steps: number;
  guidance: number;
  strength: number;
  /** The training emoji nearest to the prompt, best first; with `strength < 1` the run starts from the first. */
  references: { name: string; similarity: number }[];
  /** Wall time of the generation (text encoding, denoising, decoding), ms. */
  ms: number;
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

/** `maxTokens`, `stop` and the sampling options (`temperature`, `topK`, `topP`, `repetitionPenalty`, `repeatLastN`, `seed`), documented in options.d.ts. */
export interface GenerateOptions extends Partial<GenerateCore> {
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

import type { History, HistoryEvent, HistoryItem } from './history.js';
export * from './history.js';

/** The extraction options (`nKeywords`, `domain`, `mode`, `temperature`, `seed`, `maxWords`, `render`), documented in options.d.ts. */
export interface PreferenceOptions extends Partial<Omit<ExtractOptions, 'render'>> {
  render?: Partial<RenderOptions>;
  /** Use these events instead of the stored history. */
  events?: HistoryEvent[];
}

export interface Keyword {
  text: string;
  /** Weights of a list sum to 1. */
  weight: number;
}

export interface Preferences {
  /** Most confident first. */
  keywords: Keyword[];
  /** Per-attribute candidates (mode 'per_attribute'). */
  attributes: Record<string, string[]>;
  /** The history held nothing to go on. */
  neutral: boolean;
  /** The history as the model read it. */
  rendered: string;
}

export declare class Pmg {
  /** `worker: false` runs on the page. `pmg.history` works before `load()` and loads no wasm. */
  constructor(options?: { worker?: LoadOptions['worker']; history?: LoadOptions['history'] });
  /** Create and load in one step. */
  static load(options?: LoadOptions): Promise<Pmg>;
  readonly history: History;
  /** Preference keywords from the stored history (PMG step 2). */
  preferences(options?: PreferenceOptions): Promise<Preferences>;
  /** Keywords describing one item (the target of a generation). */
  itemKeywords(item: HistoryItem, n?: number, options?: PreferenceOptions): Promise<Keyword[]>;
  /** Generate emoji-style images for a prompt on this device (same seed, same image on every backend within rounding). */
  generateImage(options: GenerateImageOptions): Promise<GeneratedImages>;
  /** PMG end to end: personalized candidates for a target from the history on this device. */
  personalize(options: PersonalizeOptions): Promise<Personalized>;
  /** Thumbs up/down on a candidate; stored in the history, it moves this user's alpha. */
  feedback(result: Personalized, index: number, up: boolean): Promise<Profile>;
  /** The alpha learned from this user's feedback. */
  profile(): Promise<Profile>;
  readonly state: 'idle' | 'loading' | 'ready' | 'disposed';
  /** Download (or take from the cache), verify and load the model. Call once. */
  load(options?: LoadOptions): Promise<LoadResult>;
  info(): Promise<ModelInfo>;
  tokenize(text: string): Promise<number[]>;
  /**
   * Chat with the model's chat template. Generations run one at a time, in call order. Also
   * `pmg.chat.completions.create(...)`, the OpenAI chat-completions shape.
   */
  readonly chat: ((messages: ChatMessage[], options?: GenerateOptions) => Generation) & {
    completions: {
      create(request: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
      create(request: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
    };
  };
  /** Continue a raw prompt. */
  complete(prompt: string, options?: GenerateOptions): Generation;
  /** Free the model and its worker; later calls reject with `DisposedError`. */
  dispose(): void;
}

export interface ChatCompletionRequest {
  messages: ChatMessage[];
  stream?: boolean;
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stop?: string | string[];
  /** Echoed in the response. */
  model?: string;
  /** Only 1. */
  n?: 1;
  user?: string;
  signal?: AbortSignal;
}
export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: { index: 0; message: { role: 'assistant'; content: string }; finish_reason: 'stop' | 'length'; logprobs: null }[];
  usage: { completion_tokens: number };
}
export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: { index: 0; delta: { role?: 'assistant'; content?: string }; finish_reason: 'stop' | 'length' | null; logprobs: null }[];
}

export interface KnownModel {
  file: string;
  bytes: number;
  sha256: string;
  license: string;
  /** A revision-pinned download: the GGUF, or with `archive` the package archive holding it. */
  url: string;
  archive?: { member: string; bytes: number; sha256: string };
}
export declare const models: Record<string, KnownModel>;
export declare const defaultLlm: string;
export interface WeightFile {
  file: string;
  bytes: number;
  sha256: string;
  /** The copy shipped in this package. */
  url(): URL;
}
/** The image generator and scorer trained by the pmg project. */
export declare const generator: {
  id: string;
  license: string;
  card: string;
  files: { autoencoder: WeightFile; denoiser: WeightFile; scorer: WeightFile; softPrompt: WeightFile };
};

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
  /** The aborting signal's `reason`. */
  reason?: unknown;
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
export declare class HistoryError extends PmgError {
  index?: number;
  field?: string;
}
export declare class PreferencesError extends PmgError {}
export declare class RuntimeError extends PmgError {}
