// One member out of a zip archive (a PyPI wheel is one), in the browser or Node: stored or deflated
// entries, read through the central directory. Format: PKWARE APPNOTE.TXT 6.3.10, sections 4.3.7
// (local header), 4.3.12 (central directory header) and 4.3.16 (end of central directory).

import { ModelError } from './errors.js';

const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

/**
 * The bytes of `member` in the zip `bytes`, checked against the sizes the archive records.
 * @param {Uint8Array} bytes
 * @param {string} member path inside the archive
 * @returns {Promise<Uint8Array>}
 */
export async function zipMember(bytes, member) {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = (why) => new ModelError(`not a readable zip archive: ${why}`);
  // The end record is within the last 22 + 65535 (comment) bytes.
  let end = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 22 - 0xffff); i--) {
    if (v.getUint32(i, true) === EOCD) {
      end = i;
      break;
    }
  }
  if (end < 0) throw bad('no end of central directory');
  const count = v.getUint16(end + 10, true);
  let at = v.getUint32(end + 16, true);
  const names = [];
  for (let n = 0; n < count; n++) {
    if (at + 46 > bytes.length || v.getUint32(at, true) !== CENTRAL) throw bad('damaged central directory');
    const method = v.getUint16(at + 10, true);
    const packed = v.getUint32(at + 20, true);
    const size = v.getUint32(at + 24, true);
    const nameLen = v.getUint16(at + 28, true);
    const skip = nameLen + v.getUint16(at + 30, true) + v.getUint16(at + 32, true);
    const local = v.getUint32(at + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLen));
    names.push(name);
    at += 46 + skip;
    if (name !== member) continue;
    if (packed === 0xffffffff || size === 0xffffffff || local === 0xffffffff) throw bad('zip64 entries are not supported');
    if (local + 30 > bytes.length || v.getUint32(local, true) !== LOCAL) throw bad(`no local header for ${member}`);
    const start = local + 30 + v.getUint16(local + 26, true) + v.getUint16(local + 28, true);
    if (start + packed > bytes.length) throw bad(`${member} runs past the end of the archive`);
    const data = bytes.subarray(start, start + packed);
    if (method === 0) {
      if (packed !== size) throw bad(`stored entry ${member} has two sizes`);
      return data.slice();
    }
    if (method !== 8) throw bad(`${member} uses compression method ${method} (only stored and deflate are read)`);
    return inflate(data, size, member, bad);
  }
  throw bad(`no member ${member} (the archive holds ${names.slice(0, 8).join(', ')}${names.length > 8 ? ', ...' : ''})`);
}

// Streams the raw deflate data into one buffer of the recorded size (no intermediate copies).
async function inflate(data, size, member, bad) {
  const out = new Uint8Array(size);
  let n = 0;
  const reader = new Blob([data]).stream().pipeThrough(new DecompressionStream('deflate-raw')).getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (n + value.length > size) throw bad(`${member} inflates to more than its recorded ${size} bytes`);
      out.set(value, n);
      n += value.length;
    }
  } catch (e) {
    if (e instanceof ModelError) throw e;
    throw bad(`${member} does not inflate: ${e?.message ?? e}`);
  }
  if (n !== size) throw bad(`${member} inflates to ${n} bytes, the archive records ${size}`);
  return out;
}
