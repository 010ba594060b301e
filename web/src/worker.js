// The dedicated worker that runs the model, so that the page never blocks. Protocol (internal):
//   page -> worker  { id, op, args }   (op: 'cancel', or one of `dispatch` in engine.js)
//   worker -> page  { id, type: 'progress' | 'token' | 'result' | 'error', value | error }

import { Engine, dispatch } from './engine.js';
import { errorToJSON } from './errors.js';

const engine = new Engine();
const cancelled = new Set();

self.onmessage = async ({ data: m }) => {
  const reply = (o) => self.postMessage({ id: m.id, ...o });
  if (m.op === 'cancel') {
    cancelled.add(m.args.target); // no reply: the generation itself answers
    return;
  }
  try {
    const value = await dispatch(engine, m.op, m.args, {
      // Progress events may carry an error (a failed cache write): send it in cloneable form.
      onProgress: (p) => reply({ type: 'progress', value: p.error ? { ...p, error: errorToJSON(p.error) } : p }),
      onToken: (text, id) => reply({ type: 'token', value: { text, id } }),
      isCancelled: () => cancelled.has(m.id),
    });
    if (value?.cacheError) value.cacheError = errorToJSON(value.cacheError);
    reply({ type: 'result', value });
  } catch (e) {
    reply({ type: 'error', error: errorToJSON(e) });
  } finally {
    cancelled.delete(m.id);
  }
};
