// Typed errors of pmg-web. Every error the package throws is a `PmgError`; its `name` says the kind,
// so both `e instanceof IntegrityError` and `e.name === 'IntegrityError'` work, also for errors that
// crossed the worker boundary (they travel as plain objects and are rebuilt here).

export class PmgError extends Error {
  constructor(message, details = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'PmgError';
    for (const [k, v] of Object.entries(details)) if (k !== 'cause') this[k] = v;
  }
}

// Names are set explicitly: bundlers may minify class names.
function kind(name) {
  const C = class extends PmgError {
    constructor(message, details) {
      super(message, details);
      this.name = name;
    }
  };
  Object.defineProperty(C, 'name', { value: name });
  return C;
}

/** A method was called before `load()` finished. */
export const NotLoadedError = kind('NotLoadedError');
/** A method was called after `dispose()`, or after the runtime failed and was shut down. */
export const DisposedError = kind('DisposedError');
/** The operation was cancelled through its `AbortSignal`. Same `name` as the DOM's abort error. */
export const AbortError = kind('AbortError');
/** The model could not be downloaded: `status` is the HTTP status (0 for a network failure), `url` the address. */
export const NetworkError = kind('NetworkError');
/** The downloaded bytes do not have the expected SHA-256 (`expected`, `actual`). */
export const IntegrityError = kind('IntegrityError');
/** The browser's storage quota does not hold the model; it was loaded but not cached. */
export const QuotaExceededError = kind('QuotaExceededError');
/** The requested device is unavailable (e.g. `device: 'webgpu'` without WebGPU). */
export const DeviceError = kind('DeviceError');
/** The file is not a valid GGUF (truncated, corrupt, hostile). */
export const GgufError = kind('GgufError');
/** The GGUF is valid but is not a model pmg can run (missing metadata or tensors). */
export const ModelError = kind('ModelError');
/** The model's tokenizer or chat template could not be built or applied. */
export const TokenizerError = kind('TokenizerError');
/** An argument is out of range or malformed (options, messages, context full). */
export const InvalidArgumentError = kind('InvalidArgumentError');
/** A history event or export is malformed, too large, or of an unknown kind (`index`, `field` say where). */
export const HistoryError = kind('HistoryError');
/** The model's answer could not be turned into preference keywords. */
export const PreferencesError = kind('PreferencesError');
/** The worker or the wasm runtime failed unexpectedly (a bug: please report it). */
export const RuntimeError = kind('RuntimeError');

const classes = {
  NotLoadedError, DisposedError, AbortError, NetworkError, IntegrityError, QuotaExceededError, DeviceError,
  GgufError, ModelError, TokenizerError, InvalidArgumentError, HistoryError, PreferencesError, RuntimeError,
};

/** A `PmgError` from anything thrown: errors of the wasm module carry their kind in `name`. */
export function toPmgError(e) {
  if (e instanceof PmgError) return e;
  if (e?.name === 'AbortError') return new AbortError(e.message || 'aborted');
  if (e?.name === 'QuotaExceededError') return new QuotaExceededError(e.message || 'storage quota exceeded');
  const Cls = classes[e?.name];
  if (Cls) return new Cls(e.message);
  // wasm traps (`RuntimeError: unreachable`) and anything else unexpected.
  return new RuntimeError(String(e?.message ?? e), { cause: e });
}

/** A structured-clone-safe form of an error, for postMessage. */
export function errorToJSON(e) {
  const err = toPmgError(e);
  const out = { name: err.name, message: err.message };
  for (const k of ['status', 'url', 'expected', 'actual', 'partial', 'index', 'field', 'rejected']) if (err[k] !== undefined) out[k] = err[k];
  return out;
}

/** Rebuild an error sent by `errorToJSON`. */
export function errorFromJSON(o) {
  const { name, message, ...details } = o ?? {};
  const Cls = classes[name] ?? RuntimeError;
  return new Cls(message ?? 'unknown error', details);
}
