// The behaviour history on this device, as its own light module: `import { History } from 'pmg-web/history'`
// records, lists and deletes events in IndexedDB without loading the wasm module or any model.
//
// Validation follows docs/history.schema.json (generated into history-schema.js), the same rules the
// Rust crate applies (crates/pmg/tests/history_rules.rs and web/tests/unit/history.test.mjs check both
// against one set of cases, crates/pmg/tests/golden/history-cases.json).

import { HistoryError, InvalidArgumentError, QuotaExceededError, RuntimeError } from './errors.js';
import schema from './history-schema.js';

/** Where a browser keeps a history unless told otherwise: the last 5,000 events of the last 365 days. */
export const DEFAULT_RETENTION = Object.freeze({ maxEvents: 5000, maxAgeMs: 365 * 24 * 3600 * 1000 });

// ---------------------------------------------------------------- validation (from the JSON schema)

const defs = schema.$defs;
const resolve = (s) => (s?.$ref ? defs[s.$ref.replace('#/$defs/', '')] : s);
const branches = defs.event.oneOf;
const maxEventsPerImport = schema.properties.events.maxItems;

const typeOk = {
  string: (v) => typeof v === 'string',
  integer: (v) => Number.isInteger(v),
  number: (v) => typeof v === 'number' && Number.isFinite(v),
  boolean: (v) => typeof v === 'boolean',
  object: (v) => v !== null && typeof v === 'object' && !Array.isArray(v),
  array: (v) => Array.isArray(v),
};

/** Characters as Rust counts them (Unicode scalar values), not UTF-16 units. */
const chars = (s) => {
  let n = 0;
  for (const _ of s) n++;
  return n;
};

class Invalid {
  constructor(field, message, extra = {}) {
    Object.assign(this, { field, message, ...extra });
  }
}

// The subset of JSON Schema the history schema uses, plus `x-maximum-from` (a number bounded by a sibling).
function check(value, s, field, parent) {
  s = resolve(s);
  if (s.const !== undefined && value !== s.const) throw new Invalid(field, `must be ${JSON.stringify(s.const)}`);
  if (s.enum && !s.enum.includes(value)) throw new Invalid(field, `must be one of ${s.enum.map((v) => JSON.stringify(v)).join(', ')}`);
  if (s.type && !typeOk[s.type](value)) throw new Invalid(field, `must be ${s.type === 'integer' ? 'an integer' : `a ${s.type}`}`);
  if (typeof value === 'string') {
    const len = chars(value);
    if (s.maxLength !== undefined && len > s.maxLength) throw new Invalid(field, `is ${len} characters long, more than ${s.maxLength}`, { len, max: s.maxLength });
    if ((s.minLength !== undefined && len < s.minLength) || (s.pattern && !new RegExp(s.pattern, 'u').test(value))) throw new Invalid(field, 'must not be empty');
  }
  if (typeof value === 'number') {
    const max = s['x-maximum-from'] ? (parent[s['x-maximum-from']] ?? resolve(branchOf(parent).properties[s['x-maximum-from']]).default) : s.maximum;
    if ((s.minimum !== undefined && value < s.minimum) || (max !== undefined && value > max)) {
      throw new Invalid(field, `${value} is not within ${s.minimum ?? '-inf'}..=${max ?? 'inf'}`);
    }
  }
  if (Array.isArray(value)) {
    if (s.maxItems !== undefined && value.length > s.maxItems) throw new Invalid(field, `has ${value.length} entries, more than ${s.maxItems}`, { len: value.length, max: s.maxItems });
    if (s.items) value.forEach((v) => check(v, s.items, `${field}[]`, value));
  }
  if (s.properties) checkObject(value, s, field ? `${field}.` : '');
}

function checkObject(o, s, prefix) {
  for (const k of Object.keys(o)) if (!(k in s.properties)) throw new Invalid(`${prefix}${k}`, 'is not a known field');
  for (const k of s.required ?? []) if (o[k] === undefined) throw new Invalid(`${prefix}${k}`, 'is missing');
  // A number bounded by a sibling (`x-maximum-from`) is checked after that sibling, as Rust does.
  const props = Object.entries(s.properties).sort(([, a], [, b]) => Number('x-maximum-from' in a) - Number('x-maximum-from' in b));
  for (const [k, sub] of props) if (o[k] !== undefined && k !== 'type') check(o[k], sub, `${prefix}${k}`, o);
}

function branchOf(e) {
  if (typeof e.type !== 'string') return undefined;
  return branches.find((b) => b.properties.type.const === e.type || b.properties.type.enum?.includes(e.type));
}

/**
 * Check one event; returns it unchanged or throws `HistoryError` (`index`, `field`).
 * @param {unknown} event
 * @param {number} [index] names the event in the error
 */
export function validateEvent(event, index = 0) {
  const fail = (field, message, extra) => new HistoryError(`event ${index}: ${field ? `${field} ` : ''}${message}`, { index, field, ...extra });
  if (!typeOk.object(event)) throw fail(undefined, 'is not an object');
  const branch = branchOf(event);
  if (!branch) throw fail('type', `${JSON.stringify(event.type)} is not a known event type (${branches.flatMap((b) => b.properties.type.enum ?? [b.properties.type.const]).join(', ')})`);
  try {
    checkObject(event, branch, '');
  } catch (e) {
    if (e instanceof Invalid) throw fail(e.field, e.message, e.len === undefined ? {} : { len: e.len, max: e.max });
    throw e;
  }
  return event;
}

/**
 * Check an event, an array of events, or an export (`{ version: 1, events }`, as an object or JSON text).
 * Returns `{ events, rejected }`: the valid events, and `{ index, field, message }` for each refused one. The
 * whole input is refused (throws) when it is not one of these shapes or holds too many events.
 */
export function validateEvents(input) {
  let data = input;
  if (typeof input === 'string') {
    try {
      data = JSON.parse(input);
    } catch (e) {
      throw new HistoryError(`not JSON: ${e.message}`, { index: 0 });
    }
  }
  let list;
  if (Array.isArray(data)) list = data;
  else if (typeOk.object(data) && ('events' in data || 'version' in data)) {
    if (data.version !== undefined && data.version !== schema.properties.version.const) {
      throw new HistoryError(`export version ${data.version} is not supported (expected ${schema.properties.version.const})`, { index: 0, field: 'version' });
    }
    if (!Array.isArray(data.events)) throw new HistoryError('an export needs an `events` array', { index: 0, field: 'events' });
    list = data.events;
  } else if (typeOk.object(data)) list = [data];
  else throw new HistoryError('expected an event, an array of events or { "version": 1, "events": [...] }', { index: 0, field: '(top level)' });
  if (list.length > maxEventsPerImport) throw new HistoryError(`${list.length} events is more than ${maxEventsPerImport} in one import`, { index: 0 });
  const events = [];
  const rejected = [];
  list.forEach((e, i) => {
    try {
      events.push(validateEvent(e, i));
    } catch (err) {
      // Plain records: a report can be logged, stored or shown as it is.
      rejected.push({ index: err.index, field: err.field, message: err.message });
    }
  });
  return { events, rejected };
}

// ---------------------------------------------------------------- storage (IndexedDB)

const VERSION = 2;
const EVENTS = 'events';
const META = 'meta';

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
  if (e instanceof HistoryError || e instanceof InvalidArgumentError) return e;
  return new RuntimeError(`IndexedDB: ${e?.message ?? e}`, { cause: e });
}

const USER = /^[\w.@+-]{1,128}$/u;

/**
 * A person's behaviour history in this browser's IndexedDB. Each `user` is its own database
 * (`pmg` for the default user, `pmg:<user>` otherwise), so a shared device keeps people apart and a
 * logout can `destroy()` one person's history. Several tabs may record at once: every write is one
 * IndexedDB transaction, so nothing is lost or half-written.
 */
export class History {
  #name;
  #db = null;
  #opening = null;
  #closed = false;

  /**
   * @param {{ user?: string, retention?: { maxEvents?: number, maxAgeMs?: number | null } }} [options]
   *   `retention` applies on every write; without it the stored policy (set by `retention(policy)`) or
   *   `DEFAULT_RETENTION`.
   */
  constructor({ user, retention } = {}) {
    if (user !== undefined && (typeof user !== 'string' || !USER.test(user))) {
      throw new InvalidArgumentError('user must be 1-128 letters, digits or . _ @ + - (an id, not a name: it is part of a database name)');
    }
    this.#name = History.databaseName(user);
    this.defaultRetention = retention === undefined ? null : policyOf(retention);
  }

  /** The IndexedDB database holding `user`'s history. */
  static databaseName(user) {
    return user === undefined ? 'pmg' : `pmg:${user}`;
  }

  /** The database, opened on first use (and again after another tab upgraded it). */
  #open() {
    if (this.#closed) return Promise.reject(new InvalidArgumentError('this History was closed'));
    if (this.#db) return Promise.resolve(this.#db);
    if (typeof indexedDB === 'undefined') return Promise.reject(new RuntimeError('IndexedDB is not available here'));
    this.#opening ??= new Promise((resolve, reject) => {
      const open = indexedDB.open(this.#name, VERSION);
      open.onupgradeneeded = (ev) => {
        const db = open.result;
        const events = ev.oldVersion < 1 ? db.createObjectStore(EVENTS, { autoIncrement: true }) : open.transaction.objectStore(EVENTS);
        if (ev.oldVersion < 1) {
          events.createIndex('at', 'at');
          db.createObjectStore(META);
        }
        if (!events.indexNames.contains('type')) events.createIndex('type', ['type', 'at']);
      };
      // Another tab still holds an older version open: it closes on its `versionchange` (below); if it
      // never does (an old build of this package), the open fails rather than waiting forever.
      let blockedTimer = null;
      open.onblocked = () => {
        blockedTimer = setTimeout(() => reject(new RuntimeError('the history database is held open by another tab with an older pmg-web; close it and retry')), 10_000);
      };
      open.onsuccess = () => {
        clearTimeout(blockedTimer);
        const db = open.result;
        // A newer tab wants to upgrade (or delete) the database: let it, and reopen on our next call.
        db.onversionchange = () => {
          db.close();
          if (this.#db === db) this.#db = null;
        };
        db.onclose = () => {
          if (this.#db === db) this.#db = null;
        };
        this.#db = db;
        resolve(db);
      };
      open.onerror = () => {
        clearTimeout(blockedTimer);
        const e = open.error;
        // Another tab upgraded the database with a newer pmg-web: this page's code is the old one.
        if (e?.name === 'VersionError') reject(new RuntimeError('the history database was upgraded by a newer pmg-web in another tab: reload this page', { cause: e }));
        else reject(typed(e));
      };
    }).finally(() => {
      this.#opening = null;
    });
    return this.#opening;
  }

  async #tx(stores, mode, fn) {
    const db = await this.#open();
    try {
      const tx = db.transaction(stores, mode);
      const out = await fn(tx);
      await done(tx);
      return out;
    } catch (e) {
      throw typed(e);
    }
  }

  /**
   * Record an event (`{ type, ...}`; `at` defaults to now): throws `HistoryError` if it is invalid.
   * An array records every valid event in one transaction and returns `{ accepted, rejected }`.
   */
  async record(event) {
    const stamp = (e) => (typeOk.object(e) && e.at === undefined ? { ...e, at: Date.now() } : e);
    if (!Array.isArray(event)) {
      await this.#add([validateEvent(stamp(event), 0)]);
      return undefined;
    }
    const { events, rejected } = validateEvents(event.map(stamp));
    await this.#add(events);
    return { accepted: events.length, rejected };
  }

  /** Add the valid events of an export (JSON text or object) or array; returns `{ accepted, rejected }`. */
  async import(data) {
    const { events, rejected } = validateEvents(data);
    await this.#add(events);
    return { accepted: events.length, rejected };
  }

  async #add(events) {
    if (!events.length) return;
    await this.#tx([EVENTS, META], 'readwrite', async (tx) => {
      const store = tx.objectStore(EVENTS);
      for (const e of events) store.add(e);
      await this.#retainIn(tx, await this.#policyIn(tx), Date.now());
    });
  }

  /**
   * Events, oldest first. `query`: `type` (one or several), `since` / `until` (ms, inclusive), `limit`
   * (the newest `limit` of the match).
   */
  async list(query = {}) {
    return (await this.entries(query)).map((e) => e.event);
  }

  /** Like `list()`, each event with the `id` that `delete(id)` takes. */
  async entries({ type, since, until, limit } = {}) {
    const types = type === undefined ? null : [type].flat();
    if (types && !types.every((t) => typeof t === 'string')) throw new InvalidArgumentError('type must be an event type or an array of them');
    for (const [k, v] of [['since', since], ['until', until], ['limit', limit]]) {
      if (v !== undefined && !(Number.isFinite(v) && v >= 0)) throw new InvalidArgumentError(`${k} must be a number >= 0`);
    }
    const lo = since ?? 0;
    const hi = until ?? Number.MAX_SAFE_INTEGER;
    const out = await this.#tx(EVENTS, 'readonly', async (tx) => {
      const store = tx.objectStore(EVENTS);
      const read = async (index, range) => {
        const [keys, values] = await Promise.all([req(index.getAllKeys(range)), req(index.getAll(range))]);
        return values.map((event, i) => ({ id: keys[i], event }));
      };
      if (!types) return read(store.index('at'), IDBKeyRange.bound(lo, hi));
      const parts = await Promise.all(types.map((t) => read(store.index('type'), IDBKeyRange.bound([t, lo], [t, hi]))));
      return parts.flat().sort((a, b) => a.event.at - b.event.at || a.id - b.id);
    });
    return limit === undefined ? out : out.slice(Math.max(0, out.length - limit));
  }

  /** Delete one event by the `id` of `entries()`; returns whether it existed. */
  async delete(id) {
    if (!Number.isInteger(id)) throw new InvalidArgumentError('delete(id) takes an id from entries()');
    return this.#tx(EVENTS, 'readwrite', async (tx) => {
      const store = tx.objectStore(EVENTS);
      const found = (await req(store.count(id))) > 0;
      if (found) store.delete(id);
      return found;
    });
  }

  /** The history as JSON text: `{ "version": 1, "events": [...] }` (what `import()` reads back). */
  async export() {
    return JSON.stringify({ version: schema.properties.version.const, events: await this.list() }, null, 2);
  }

  /** Delete every event (the retention policy stays). */
  async clear() {
    await this.#tx(EVENTS, 'readwrite', async (tx) => {
      tx.objectStore(EVENTS).clear();
    });
  }

  /** Get (no argument) or set `{ maxEvents, maxAgeMs }`; setting stores it, applies it and returns how many events were dropped. */
  async retention(policy) {
    if (policy === undefined) return this.#tx(META, 'readonly', (tx) => this.#policyIn(tx));
    const p = policyOf(policy);
    return this.#tx([EVENTS, META], 'readwrite', async (tx) => {
      tx.objectStore(META).put(p, 'retention');
      return this.#retainIn(tx, p, Date.now());
    });
  }

  /**
   * Ask the browser to keep this origin's storage under storage pressure (`navigator.storage.persist()`).
   * Resolves to whether it is persistent; browsers may ask the user or decide from engagement.
   */
  async persist() {
    const s = globalThis.navigator?.storage;
    if (!s?.persist) return false;
    return (await s.persisted?.()) || s.persist();
  }

  /** Close the connection; later calls reject. */
  close() {
    this.#closed = true;
    this.#db?.close();
    this.#db = null;
  }

  /** Delete this user's whole history database (a logout on a shared device). */
  async destroy() {
    this.close();
    await new Promise((resolve, reject) => {
      const r = indexedDB.deleteDatabase(this.#name);
      r.onsuccess = () => resolve();
      r.onerror = () => reject(typed(r.error));
      // Other tabs holding it open close on `versionchange`; the deletion completes then.
    });
  }

  async #policyIn(tx) {
    return this.defaultRetention ?? (await req(tx.objectStore(META).get('retention'))) ?? DEFAULT_RETENTION;
  }

  // Drop events older than maxAgeMs, then the oldest beyond maxEvents, inside `tx`.
  async #retainIn(tx, { maxEvents, maxAgeMs }, now) {
    const store = tx.objectStore(EVENTS);
    const index = store.index('at');
    let dropped = 0;
    if (maxAgeMs != null) {
      const old = await req(index.getAllKeys(IDBKeyRange.upperBound(now - maxAgeMs, true)));
      for (const k of old) store.delete(k);
      dropped += old.length;
    }
    // Requests in a transaction run in order: this count already excludes the deletions above.
    const total = await req(store.count());
    if (total > maxEvents) {
      const keys = await req(index.getAllKeys(null, total - maxEvents));
      for (const k of keys) store.delete(k);
      dropped += keys.length;
    }
    return dropped;
  }
}

function policyOf(policy) {
  const p = { maxEvents: policy?.maxEvents ?? DEFAULT_RETENTION.maxEvents, maxAgeMs: policy?.maxAgeMs === undefined ? DEFAULT_RETENTION.maxAgeMs : policy.maxAgeMs };
  if (!Number.isInteger(p.maxEvents) || p.maxEvents < 0 || (p.maxAgeMs !== null && !(p.maxAgeMs >= 0))) {
    throw new InvalidArgumentError('retention is { maxEvents?: integer >= 0, maxAgeMs?: number >= 0 | null }');
  }
  return p;
}
