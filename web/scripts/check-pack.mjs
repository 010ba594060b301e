// `prepack`: refuse to pack an incomplete pmg-web. Every asset the package fetches at run time must be
// present and be the file the manifest names (size and SHA-256), and the generated sources current.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { generator } from '../src/models.js';

const web = new URL('../', import.meta.url);
const problems = [];
for (const f of ['pkg/pmg.js', 'pkg/pmg_bg.wasm', 'src/worker.js', 'src/index.d.ts', 'src/history.d.ts', 'README.md', 'LICENSE', 'models/EMOJI-MODELS.md']) {
  if (!existsSync(new URL(f, web))) problems.push(`${f} is missing`);
}
for (const f of Object.values(generator.files)) {
  const path = new URL(`models/${f.file}`, web);
  if (!existsSync(path)) {
    problems.push(`models/${f.file} is missing`);
    continue;
  }
  const b = readFileSync(path);
  const sha = createHash('sha256').update(b).digest('hex');
  if (b.length !== f.bytes || sha !== f.sha256) problems.push(`models/${f.file} is ${b.length} B ${sha}, the manifest says ${f.bytes} B ${f.sha256}`);
}
const gen = spawnSync(process.execPath, [fileURLToPath(new URL('generate.mjs', import.meta.url)), '--check'], { encoding: 'utf8' });
if (gen.status !== 0) problems.push(gen.stderr.trim());
if (problems.length) {
  console.error(`pmg-web is not ready to pack (run scripts/build-web.sh):\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
