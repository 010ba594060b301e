import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { defaultLlm, generator, models } from '../../src/models.js';

test('the package knows the same models as models/manifest.json', () => {
  const manifest = JSON.parse(readFileSync(new URL('../../../models/manifest.json', import.meta.url), 'utf8'));
  assert.equal(defaultLlm, manifest.default_llm);
  const fromManifest = Object.fromEntries(manifest.models.map((m) => [m.id, { file: m.file, bytes: m.bytes, sha256: m.sha256, license: m.license, url: m.production_url }]));
  assert.deepEqual(models, fromManifest);
  const { id, license, card, autoencoder, denoiser, scorer, soft_prompt: softPrompt } = manifest.generator;
  assert.deepEqual(generator, { id, license, card, files: { autoencoder, denoiser, scorer, softPrompt } });
});
