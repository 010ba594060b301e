// The package's generated sources (models.js from models/manifest.json, history-schema.js from
// docs/history.schema.json) are current.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

test('generated sources are up to date (node web/scripts/generate.mjs --check)', () => {
  const r = spawnSync(process.execPath, [fileURLToPath(new URL('../../scripts/generate.mjs', import.meta.url)), '--check'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});
