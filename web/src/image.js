// Generated pictures as the page gets them: `ImageData` with PNG helpers, so that an app (and the
// demo) need not write its own export code.

/** Nearest-neighbour upscaling keeps the sticker's pixels sharp; `smooth: true` interpolates instead. */
function canvasOf(image, scale, smooth) {
  if (!(Number.isInteger(scale) && scale >= 1 && scale <= 32)) throw new RangeError('scale must be an integer from 1 to 32');
  const make = (w, h) => (typeof OffscreenCanvas !== 'undefined' ? new OffscreenCanvas(w, h) : Object.assign(document.createElement('canvas'), { width: w, height: h }));
  const src = make(image.width, image.height);
  src.getContext('2d').putImageData(image, 0, 0);
  if (scale === 1) return src;
  const out = make(image.width * scale, image.height * scale);
  const ctx = out.getContext('2d');
  ctx.imageSmoothingEnabled = smooth;
  ctx.drawImage(src, 0, 0, out.width, out.height);
  return out;
}

/**
 * Encode an `ImageData` (any, not only pmg's) as an image Blob, optionally scaled up.
 * @param {ImageData} image
 * @param {{ scale?: number, smooth?: boolean, type?: string, quality?: number }} [options] `type` default 'image/png'
 * @returns {Promise<Blob>}
 */
export function imageToBlob(image, { scale = 1, smooth = false, type = 'image/png', quality } = {}) {
  const c = canvasOf(image, scale, smooth);
  if (c.convertToBlob) return c.convertToBlob({ type, quality });
  return new Promise((resolve, reject) => c.toBlob((b) => (b ? resolve(b) : reject(new Error('the image could not be encoded'))), type, quality));
}

/** A generated picture: an `ImageData` (draw it with `putImageData`) that can encode itself. */
// (`ImageData` exists in pages and workers; the fallback only lets Node import the module.)
export class PmgImage extends (globalThis.ImageData ?? class {}) {
  /** The same pixels as a `PmgImage` (results that crossed from the worker arrive as plain `ImageData`). */
  static from(image) {
    return image instanceof PmgImage ? image : new PmgImage(image.data, image.width, image.height);
  }

  /** PNG (or `type`) Blob, `scale` times larger: `URL.createObjectURL(await image.toBlob({ scale: 4 }))`. */
  toBlob(options) {
    return imageToBlob(this, options);
  }

  /** PNG file bytes. */
  async toPng(options = {}) {
    return new Uint8Array(await (await imageToBlob(this, { ...options, type: 'image/png' })).arrayBuffer());
  }

  /** A canvas holding the picture, `scale` times larger (an `OffscreenCanvas` where available). */
  toCanvas({ scale = 1, smooth = false } = {}) {
    return canvasOf(this, scale, smooth);
  }
}
