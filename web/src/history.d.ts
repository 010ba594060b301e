// Types of pmg-web/history (src/history.js): the behaviour history, without the model.
import type { HistoryError } from './index.js';

/** One behaviour event (the crate's `history::Event`; schema: docs/history.schema.json). `at` defaults to now. */
export type HistoryEvent =
  | { type: 'view' | 'click'; at?: number; item: HistoryItem; dwellMs?: number }
  | { type: 'purchase'; at?: number; item: HistoryItem; quantity?: number }
  | { type: 'rating'; at?: number; item: HistoryItem; value: number; scale?: number }
  | { type: 'review'; at?: number; item: HistoryItem; text: string }
  | { type: 'search'; at?: number; query: string }
  | { type: 'message'; at?: number; role: 'user' | 'other'; text: string; speaker?: string }
  /** Written by `feedback()`: a thumbs up/down on a personalized image and how it scored. */
  | { type: 'feedback'; at?: number; up: boolean; target: string; alpha: number; weight?: number; accuracy: number; preference: number; meanAccuracy: number; meanPreference: number };

export interface HistoryItem {
  id: string;
  title: string;
  category?: string;
  tags?: string[];
  description?: string;
  /** A reference (URL, emoji code point), never image bytes. */
  image?: string;
}

/** A stored event: `at` is always set. */
export type StoredEvent = HistoryEvent & { at: number };

/** Why an event was refused: its `index` in the input and the `field` at fault. */
export interface Rejected {
  index: number;
  field?: string;
  message: string;
}

export interface ImportReport {
  accepted: number;
  rejected: Rejected[];
}

export interface Retention {
  maxEvents: number;
  /** Events older than this (ms) are dropped; `null` keeps them. */
  maxAgeMs?: number | null;
}

export interface HistoryQuery {
  /** Only events of this type (or these types). */
  type?: HistoryEvent['type'] | HistoryEvent['type'][];
  /** Only events at or after this time (ms since 1970). */
  since?: number;
  /** Only events at or before this time. */
  until?: number;
  /** Only the newest `limit` of the match (still oldest first). */
  limit?: number;
}

/** The default retention of a browser history: 5,000 events, 365 days. */
export declare const DEFAULT_RETENTION: Readonly<{ maxEvents: number; maxAgeMs: number }>;

/**
 * The behaviour history, in IndexedDB on this device; nothing in it is ever sent anywhere. Each `user`
 * has its own database. Loads no wasm: `import { History } from 'pmg-web/history'`.
 */
export declare class History {
  /** `user`: an id (letters, digits, `._@+-`) for a shared device; `retention` overrides the stored policy. */
  constructor(options?: { user?: string; retention?: Partial<Retention> });
  /** The IndexedDB database name of `user`'s history. */
  static databaseName(user?: string): string;
  /** One event: rejects with `HistoryError` if invalid. An array: stores the valid ones (one transaction), reports the rest. */
  record(event: HistoryEvent): Promise<void>;
  record(events: HistoryEvent[]): Promise<ImportReport>;
  /** Events, oldest first. */
  list(query?: HistoryQuery): Promise<StoredEvent[]>;
  /** Events with the id `delete()` takes. */
  entries(query?: HistoryQuery): Promise<{ id: number; event: StoredEvent }[]>;
  /** Delete one event; resolves to whether it existed. */
  delete(id: number): Promise<boolean>;
  /** `{ "version": 1, "events": [...] }` as JSON text. */
  export(): Promise<string>;
  import(data: string | { version: 1; events: HistoryEvent[] } | HistoryEvent[]): Promise<ImportReport>;
  /** Delete every event. */
  clear(): Promise<void>;
  retention(): Promise<Retention>;
  /** Set and apply; resolves to the number of events dropped. */
  retention(policy: Partial<Retention>): Promise<number>;
  /** Ask the browser to keep this origin's storage under pressure (`navigator.storage.persist()`). */
  persist(): Promise<boolean>;
  /** Close the database connection. */
  close(): void;
  /** Delete this user's whole history (e.g. at logout). */
  destroy(): Promise<void>;
}

/** Check one event with the crate's rules (docs/history.schema.json); throws `HistoryError`. */
export declare function validateEvent<E extends HistoryEvent>(event: E, index?: number): E;
/** Check events or an export; the valid ones and an error for each refused one. */
export declare function validateEvents(input: unknown): { events: StoredEvent[]; rejected: Rejected[] };
