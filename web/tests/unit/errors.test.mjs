import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as errors from '../../src/errors.js';

const { PmgError, errorFromJSON, errorToJSON, toPmgError } = errors;
const kinds = Object.keys(errors).filter((k) => errors[k]?.prototype instanceof PmgError);

test('every error kind keeps its class and name across a worker round trip', () => {
  assert.ok(kinds.length >= 12);
  for (const k of kinds) {
    const e = new errors[k]('boom', { status: 404, url: 'u' });
    assert.equal(e.name, k);
    assert.equal(errors[k].name, k);
    assert.ok(e instanceof PmgError && e instanceof Error);
    const back = errorFromJSON(structuredClone(errorToJSON(e)));
    assert.ok(back instanceof errors[k], k);
    assert.deepEqual([back.name, back.message, back.status, back.url], [k, 'boom', 404, 'u']);
  }
});

test('errors of the wasm module map to their kind by name', () => {
  for (const name of ['GgufError', 'ModelError', 'TokenizerError', 'DeviceError', 'IntegrityError', 'InvalidArgumentError', 'AbortError']) {
    const js = new Error('from wasm');
    js.name = name;
    const e = toPmgError(js);
    assert.equal(e.name, name);
    assert.ok(e instanceof errors[name]);
  }
});

test('DOM exceptions and traps become typed errors', () => {
  assert.ok(toPmgError(new DOMException('stop', 'AbortError')) instanceof errors.AbortError);
  assert.ok(toPmgError(new DOMException('full', 'QuotaExceededError')) instanceof errors.QuotaExceededError);
  const trap = toPmgError(new WebAssembly.RuntimeError('unreachable'));
  assert.ok(trap instanceof errors.RuntimeError);
  assert.match(trap.message, /unreachable/);
  assert.ok(toPmgError('a string') instanceof errors.RuntimeError);
  assert.ok(errorFromJSON(undefined) instanceof errors.RuntimeError);
});

test('an aborted generation carries its partial result across the boundary', () => {
  const e = new errors.AbortError('aborted', { partial: { text: 'ab', tokens: [1, 2], finishReason: 'cancelled' } });
  const back = errorFromJSON(structuredClone(errorToJSON(e)));
  assert.deepEqual(back.partial.tokens, [1, 2]);
});
