// Compiled by `tsc -p web` in the tests: the README's usage must type-check against src/index.d.ts,
// and misuse must not (the @ts-expect-error lines fail the build if the types stop rejecting them).
import { AbortError, DeviceError, HistoryError, IntegrityError, NetworkError, Pmg, QuotaExceededError, cachedModels, clearModelCache, generator, imageToBlob, models, type LoadProgress, type ModelInfo } from 'pmg-web';
import { History, DEFAULT_RETENTION, validateEvents } from 'pmg-web/history';

export async function usage(out: HTMLElement): Promise<void> {
  const ac = new AbortController();
  const pmg = await Pmg.load({
    llm: 'smollm2-135m-instruct-q4_1',
    device: 'auto',
    llmBaseUrl: '/models/',
    generatorBaseUrl: '/pmg/',
    preload: ['generator', 'scorer'],
    history: { user: 'alice' },
    signal: ac.signal,
    onProgress: (p: LoadProgress) => {
      if (p.phase === 'download') out.textContent = `${p.file}: ${p.loaded} / ${p.total}${p.fromCache ? ' (cached)' : ''}, ${Math.round((p.fraction ?? 0) * 100)}% of all`;
      if (p.phase === 'cache' && p.error instanceof QuotaExceededError) console.warn(p.error.message);
    },
  });
  const info: ModelInfo = await pmg.info();
  const backend: 'webgpu' | 'cpu' = info.backend;
  console.log(backend, info.memory.weightBytes, info.config.n_layer);
  for await (const t of pmg.chat([{ role: 'user', content: 'Hi!' }], { maxTokens: 32, temperature: 0.7, topP: 0.9, seed: 1, signal: ac.signal })) {
    out.textContent += t.text;
  }
  const r = await pmg.complete('Once upon a time', { maxTokens: 8, stop: ['\n'] }).result;
  const reason: 'end_of_turn' | 'max_tokens' | 'stop_string' | 'context_full' | 'cancelled' = r.finishReason;
  const ids: number[] = await pmg.tokenize('hello');
  console.log(reason, ids, models['smollm2-135m-instruct-q4_1'].sha256, await cachedModels(), await clearModelCache());
  await pmg.history.record({ type: 'view', item: { id: '1f431', title: 'cat face', tags: ['cat'] } });
  const report = await pmg.history.record([{ type: 'search', query: 'pastel', at: Date.now() }]);
  console.log(report.accepted, report.rejected.map((r) => r.field), (await pmg.history.list())[0]?.at, await pmg.history.export());
  const dropped: number = await pmg.history.retention({ maxEvents: 100 });
  const prefs = await pmg.preferences({ domain: 'stickers', nKeywords: 6, mode: 'per_attribute' });
  console.log(dropped, prefs.keywords.map((k) => `${k.text}:${k.weight}`), prefs.neutral, await pmg.itemKeywords({ id: 'x', title: 'birthday cake' }, 5));
  // @ts-expect-error: not an event type
  await pmg.history.record({ type: 'teleport' });
  const art = await pmg.generateImage({ prompt: 'smiling cat face', seed: 1, steps: 20, guidance: 3, onStep: (i, n) => console.log(i / n), signal: AbortSignal.timeout(60_000) });
  const img: ImageData = art.images[0];
  const png: Blob = await art.images[0].toBlob({ scale: 4 });
  console.log(img.width, art.ms, generator.files.denoiser.sha256, generator.files.denoiser.url().href, png.size, (await imageToBlob(img)).type);
  // @ts-expect-error: a prompt is required
  await pmg.generateImage({ seed: 1 });
  // @ts-expect-error: not a sampler
  await pmg.generateImage({ prompt: 'x', sampler: 'heun' });
  const pr = await pmg.personalize({
    target: 'birthday cake', alpha: 0.6, weights: [0, 1, 2], seeds: 2, weighting: 'rows',
    onProgress: (p) => console.log(p.phase), signal: AbortSignal.timeout(60_000),
  });
  const best: ImageData = pr.candidates[pr.chosen].image;
  console.log(best.width, pr.usedKeywords.join(', '), pr.candidates.map((c) => c.accuracy + c.preference), pr.preferences.keywords[0]?.text);
  const profile = await pmg.feedback(pr, pr.chosen, true);
  console.log(profile.alpha, (await pmg.profile()).feedback);
  // @ts-expect-error: a target is required
  await pmg.personalize({ alpha: 0.5 });
  // @ts-expect-error: not a weighting
  await pmg.personalize({ target: 'x', weighting: 'embedding' });
  await pmg.personalize({ target: 'x', steps: 8, extract: { domain: 'shop', nKeywords: 4, render: { maxItems: 4 } } });
  // @ts-expect-error: the extraction options go under `extract`
  await pmg.personalize({ target: 'x', domain: 'shop' });
  const completion = await pmg.chat.completions.create({ messages: [{ role: 'user', content: 'Hi!' }], max_tokens: 16 });
  console.log(completion.choices[0].message.content, completion.choices[0].finish_reason);
  const stream = await pmg.chat.completions.create({ messages: [{ role: 'user', content: 'Hi!' }], stream: true, signal: ac.signal });
  for await (const chunk of stream) out.textContent += chunk.choices[0].delta.content ?? '';
  pmg.dispose();

  const history = new History({ user: 'alice', retention: { maxAgeMs: 30 * 86_400_000 } });
  await history.record({ type: 'click', item: { id: '1f382', title: 'birthday cake' } });
  const clicks = await history.entries({ type: ['click', 'purchase'], since: Date.now() - 86_400_000, limit: 10 });
  if (clicks[0]) await history.delete(clicks[0].id);
  console.log(DEFAULT_RETENTION.maxAgeMs, validateEvents('[]').rejected.length, await history.persist(), History.databaseName('alice'));
  await history.destroy();
  const own = new Pmg({ worker: new Worker(new URL('pmg-web/worker', import.meta.url), { type: 'module' }), history });
  console.log(own.state);

  try {
    await Pmg.load({ llm: '/m.gguf', device: 'webgpu', sha256: 'ab', cache: false, worker: false, nCtx: 512 });
  } catch (e) {
    if (e instanceof NetworkError) console.log(e.status, e.url);
    if (e instanceof IntegrityError) console.log(e.expected, e.actual);
    if (e instanceof AbortError) console.log(e.partial?.text, e.reason);
    if (e instanceof DeviceError) console.log(e.message);
    if (e instanceof HistoryError) console.log(e.field, e.index);
  }

  // @ts-expect-error: not a device
  await Pmg.load({ device: 'gpu' });
  // @ts-expect-error: chat takes messages, not a string
  pmg.chat('hi');
  // @ts-expect-error: maxTokens is a number
  pmg.complete('x', { maxTokens: '8' });
  // @ts-expect-error: modelBaseUrl was split into llmBaseUrl and generatorBaseUrl
  await Pmg.load({ modelBaseUrl: '/models/' });
  // @ts-expect-error: not a generator part
  await Pmg.load({ preload: ['vae'] });
  // @ts-expect-error: a query's type is an event type
  await history.list({ type: 'teleport' });
}
