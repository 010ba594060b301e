// The token stream's semantics, driven by a scripted producer (the real one is tested in the browser).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AbortError, Generation, RuntimeError } from '../../src/index.js';

/** A producer that emits `ids` one per tick, stopping early once `stop()` was called. */
function scripted(ids, { fail } = {}) {
  const state = { stopped: false, stopCalls: 0 };
  const start = async (onToken) => {
    const out = [];
    for (const id of ids) {
      if (state.stopped) throw new AbortError('generation aborted', { partial: { text: '', tokens: out, finishReason: 'cancelled' } });
      await new Promise((r) => setTimeout(r, 1));
      out.push(id);
      onToken(`t${id}`, id);
    }
    if (fail) throw fail;
    return { text: out.map((i) => `t${i}`).join(''), tokens: out, finishReason: 'max_tokens' };
  };
  const stop = () => {
    state.stopped = true;
    state.stopCalls++;
  };
  return { start, stop, state };
}

test('iteration yields every token in order and result has the whole answer', async () => {
  const { start, stop } = scripted([5, 6, 7]);
  const g = new Generation(start, stop);
  const seen = [];
  for await (const t of g) seen.push(t.id);
  assert.deepEqual(seen, [5, 6, 7]);
  assert.equal(await g.text(), 't5t6t7');
});

test('tokens produced before iteration starts are buffered, not lost', async () => {
  const { start, stop } = scripted([1, 2, 3]);
  const g = new Generation(start, stop);
  await g.result;
  const seen = [];
  for await (const t of g) seen.push(t.id);
  assert.deepEqual(seen, [1, 2, 3]);
});

test('break stops the producer and result rejects with AbortError', async () => {
  const { start, stop, state } = scripted([1, 2, 3, 4, 5, 6]);
  const g = new Generation(start, stop);
  for await (const t of g) if (t.id === 2) break;
  assert.equal(state.stopCalls, 1);
  await assert.rejects(g.result, AbortError);
});

test('an abort signal drops buffered tokens and rejects with the partial result', async () => {
  const { start, stop } = scripted([1, 2, 3, 4, 5, 6]);
  const ac = new AbortController();
  const g = new Generation(start, stop, ac.signal);
  const seen = [];
  await assert.rejects(async () => {
    for await (const t of g) {
      seen.push(t.id);
      if (t.id === 2) {
        ac.abort(new Error('the user left'));
        await new Promise((r) => setTimeout(r, 5)); // more tokens arrive meanwhile
      }
    }
  }, (e) => e instanceof AbortError && e.partial.tokens.length >= 2 && e.reason?.message === 'the user left');
  assert.deepEqual(seen, [1, 2]);
});

test('an already aborted signal never starts', async () => {
  const { start, stop, state } = scripted([1, 2]);
  const g = new Generation(start, stop, AbortSignal.abort());
  assert.equal(state.stopCalls, 1);
  await assert.rejects(g.result, AbortError);
});

test('a producer error reaches both the iterator and result', async () => {
  const { start, stop } = scripted([1], { fail: new RuntimeError('trap') });
  const g = new Generation(start, stop);
  const seen = [];
  await assert.rejects(async () => {
    for await (const t of g) seen.push(t.id);
  }, RuntimeError);
  assert.deepEqual(seen, [1]);
  await assert.rejects(g.result, RuntimeError);
});
