// The behaviour history in IndexedDB, on the user's device. Events arrive validated (by the wasm
// module's `validateEvents`, the same rules as the Rust crate); each write is one transaction, so a
// batch is stored entirely or not at all. Runs in the worker (or on the page with `worker: false`).

import { QuotaExceededError, RuntimeError } from './errors.js';

export const DB_NAME = 'pmg';
const VERSION = 1;
const EVENTS = 'events';
const META = 'meta';

/** Default retention: the Rust crate's `Retention::default()`. */
export const DEFAULT_RETENTION = { maxEvents: 5000, maxAgeMs: null };

function req(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error ?? new DOMException('transaction aborted', 'AbortError'));
    tx.onerror = () => reject(tx.error);
  });
}

function typed(e) {
  if (e?.name === 'QuotaExceededError') return new QuotaExceededError('the history does not fit the storage quota; nothing was written');
  return new RuntimeError(`IndexedDB: ${e?.message ?? e}`);
}

export class HistoryStore {
  #db;

  constructor(db) {
    this.#db = db;
  }

  static async open(name = DB_NAME) {
    if (typeof indexedDB === 'undefined') throw new RuntimeError('IndexedDB is not available here');
    const open = indexedDB.open(name, VERSION);
    open.onupgradeneeded = () => {
      const db = open.result;
      const events = db.createObjectStore(EVENTS, { autoIncrement: true });
      events.createIndex('at', 'at');
      db.createObjectStore(META);
    };
    try {
      return new HistoryStore(await req(open));
    } catch (e) {
      throw typed(e);
    }
  }

  /** Store validated events in one transaction, then apply the retention policy. */
  async add(events) {
    if (!events.length) return;
    try {
      const tx = this.#db.transaction([EVENTS, META], 'readwrite');
      const store = tx.objectStore(EVENTS);
      for (const e of events) store.add(e);
      const policy = (await req(tx.objectStore(META).get('retention'))) ?? DEFAULT_RETENTION;
      await this.#retainIn(tx, policy, Date.now());
      await done(tx);
    } catch (e) {
      throw typed(e);
    }
  }

  /** All events, oldest first. */
  async list() {
    const tx = this.#db.transaction(EVENTS, 'readonly');
    return req(tx.objectStore(EVENTS).index('at').getAll());
  }

  async count() {
    return req(this.#db.transaction(EVENTS, 'readonly').objectStore(EVENTS).count());
  }

  async clear() {
    const tx = this.#db.transaction(EVENTS, 'readwrite');
    tx.objectStore(EVENTS).clear();
    await done(tx);
  }

  async retention() {
    return (await req(this.#db.transaction(META, 'readonly').objectStore(META).get('retention'))) ?? DEFAULT_RETENTION;
  }

  /** Set and apply a retention policy; returns how many events were dropped. */
  async setRetention(policy) {
    const tx = this.#db.transaction([EVENTS, META], 'readwrite');
    tx.objectStore(META).put(policy, 'retention');
    const dropped = await this.#retainIn(tx, policy, Date.now());
    await done(tx);
    return dropped;
  }

  // Drop events older than maxAgeMs, then the oldest beyond maxEvents, inside `tx`.
  async #retainIn(tx, { maxEvents, maxAgeMs }, now) {
    const index = tx.objectStore(EVENTS).index('at');
    let dropped = 0;
    if (maxAgeMs != null) {
      const old = await req(index.getAllKeys(IDBKeyRange.upperBound(now - maxAgeMs, true)));
      for (const k of old) tx.objectStore(EVENTS).delete(k);
      dropped += old.length;
    }
    // Requests in a transaction run in order: this count already excludes the deletions above.
    const total = await req(tx.objectStore(EVENTS).count());
    if (total > maxEvents) {
      const keys = await req(index.getAllKeys(null, total - maxEvents));
      for (const k of keys) tx.objectStore(EVENTS).delete(k);
      dropped += keys.length;
    }
    return dropped;
  }

  close() {
    this.#db.close();
  }
}
