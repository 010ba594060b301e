// pmg-web's history validation against the shared cases (the Rust crate runs the same ones:
// crates/pmg/tests/history_rules.rs), and the light module's import graph.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { validateEvent, validateEvents } from '../../src/history.js';
import { HistoryError } from '../../src/errors.js';

const { cases } = JSON.parse(readFileSync(new URL('../../../crates/pmg/tests/golden/history-cases.json', import.meta.url), 'utf8'));

test('every shared case gets the verdict and the field the Rust crate gives', () => {
  assert.ok(cases.length >= 40);
  const failures = [];
  for (const c of cases) {
    let err = null;
    try {
      validateEvent(c.event, 3);
    } catch (e) {
      err = e;
    }
    if (c.valid && err) failures.push(`${c.name}: refused (${err.message})`);
    if (!c.valid && !err) failures.push(`${c.name}: accepted`);
    if (err && !(err instanceof HistoryError && err.index === 3)) failures.push(`${c.name}: not a HistoryError with its index: ${err}`);
    if (err && c.field && err.field !== c.field) failures.push(`${c.name}: field ${err.field}, expected ${c.field}`);
  }
  assert.deepEqual(failures, []);
});

test('an import keeps the valid events and reports each refused one', () => {
  const ok = cases.filter((c) => c.valid).map((c) => c.event);
  const bad = cases.filter((c) => !c.valid).map((c) => c.event);
  const r = validateEvents(JSON.stringify({ version: 1, events: [...ok, ...bad] }));
  assert.equal(r.events.length, ok.length);
  assert.deepEqual(r.rejected.map((e) => e.index), bad.map((_, i) => ok.length + i));
  assert.throws(() => validateEvents({ version: 2, events: [] }), (e) => e instanceof HistoryError && e.field === 'version');
  assert.throws(() => validateEvents('{oops'), HistoryError);
  assert.throws(() => validateEvents(42), HistoryError);
  assert.throws(() => validateEvents(new Array(100_001).fill(ok[0])), HistoryError);
});

test('the history module loads no wasm and no model code', () => {
  const seen = new Set();
  const walk = (file) => {
    if (seen.has(file)) return;
    seen.add(file);
    const src = readFileSync(new URL(`../../src/${file}`, import.meta.url), 'utf8');
    for (const [, spec] of src.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) walk(spec.replace('./', ''));
  };
  walk('history.js');
  assert.deepEqual([...seen].sort(), ['errors.js', 'history-schema.js', 'history.js']);
});
