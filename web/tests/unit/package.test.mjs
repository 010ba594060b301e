// What `npm pack` would publish: the runtime files, the types and the wasm, nothing else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

const web = new URL('../../', import.meta.url);

test('the package ships its sources, types, worker and wasm, and no tests', { skip: !existsSync(new URL('pkg/pmg_bg.wasm', web)) && 'run scripts/build-web.sh first' }, () => {
  const [pack] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: web, encoding: 'utf8' }));
  const files = pack.files.map((f) => f.path).sort();
  for (const f of ['package.json', 'README.md', 'src/index.js', 'src/index.d.ts', 'src/worker.js', 'src/engine.js', 'src/loader.js', 'src/errors.js',
    'src/history-store.js', 'src/models.js', 'pkg/pmg.js', 'pkg/pmg_bg.wasm']) {
    assert.ok(files.includes(f), `${f} is in the package (${files.join(', ')})`);
  }
  assert.ok(!files.some((f) => f.startsWith('tests/') || f.startsWith('node_modules/') || f.startsWith('bench/')), files.join(', '));
});

test('every relative import of the sources resolves to a packaged file', () => {
  const pkg = JSON.parse(readFileSync(new URL('package.json', web), 'utf8'));
  assert.equal(pkg.exports['.'].default, './src/index.js');
  assert.equal(pkg.exports['.'].types, './src/index.d.ts');
  for (const f of ['index.js', 'engine.js', 'worker.js', 'loader.js', 'history-store.js']) {
    const src = readFileSync(new URL(`src/${f}`, web), 'utf8');
    for (const [, spec] of src.matchAll(/from '(\.[^']+)'/g)) {
      const target = new URL(spec, new URL(`src/${f}`, web));
      const rel = target.pathname.slice(web.pathname.length);
      assert.ok(pkg.files.some((p) => rel === p || rel.startsWith(p)), `${f} imports ${spec} (${rel}), which is not in "files"`);
    }
  }
});
