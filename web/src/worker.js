// The dedicated worker that runs the model, so that the page never blocks. Protocol (internal):
//   page -> worker  { id, op: 'load' | 'info' | 'tokenize' | 'generate' | 'cancel' | 'dispose', args }
//   worker -> page  { id, type: 'progress' | 'token' | 'result' | 'error', value | error }

import { Engine } from './engine.js';
import { errorToJSON } from './errors.js';

const engine = new Engine();
const cancelled = new Set();

self.onmessage = async ({ data: m }) => {
  const reply = (o) => self.postMessage({ id: m.id, ...o });
  try {
    let value;
    switch (m.op) {
      case 'load':
        // Progress events may carry an error (a failed cache write): send it in cloneable form.
        value = await engine.load(m.args, (p) => reply({ type: 'progress', value: p.error ? { ...p, error: errorToJSON(p.error) } : p }));
        if (value.cacheError) value.cacheError = errorToJSON(value.cacheError);
        break;
      case 'info':
        value = engine.info();
        break;
      case 'tokenize':
        value = engine.tokenize(m.args.text);
        break;
      case 'generate':
        value = await engine.generate(m.args.kind, m.args.input, m.args.options,
          (text, id) => reply({ type: 'token', value: { text, id } }), () => cancelled.has(m.id));
        break;
      case 'cancel':
        cancelled.add(m.args.target);
        return; // no reply: the generation itself answers
      case 'dispose':
        engine.dispose();
        value = true;
        break;
      default:
        throw new Error(`unknown op ${m.op}`);
    }
    reply({ type: 'result', value });
  } catch (e) {
    reply({ type: 'error', error: errorToJSON(e) });
  } finally {
    if (m.op === 'generate') cancelled.delete(m.id);
  }
};

