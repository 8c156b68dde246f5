// Node edge: reading input images (PNG, or JPEG through the small pure-JS `jpeg-js` decoder) and writing PNG.
// `jpeg-js` earns its place: the evaluation photos and most users' photos are JPEG, and it has no dependencies.
import { readFile } from 'node:fs/promises';
import jpeg from 'jpeg-js';
import { decodePng, MAX_PNG_PIXELS, MAX_PNG_SIDE, PngError, type Image } from './png.ts';

export type { Image };

function isJpeg(b: Uint8Array): boolean {
  return b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;
}

/** Decode PNG or JPEG bytes; `name` is used in error messages. */
export function decodeImage(bytes: Uint8Array, name: string): Image {
  if (isJpeg(bytes)) {
    let d: { width: number; height: number; data: Uint8Array };
    try {
      d = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: MAX_PNG_PIXELS / 1e6, maxMemoryUsageInMB: 2048 });
    } catch (e) {
      throw new PngError(`${name}: corrupt or unsupported JPEG (${(e as Error).message})`);
    }
    const { width, height } = d;
    if (width < 1 || height < 1) throw new PngError(`${name}: the JPEG is empty (${width}x${height})`);
    if (width > MAX_PNG_SIDE || height > MAX_PNG_SIDE) throw new PngError(`${name}: ${width}x${height} is over ${MAX_PNG_SIDE} pixels a side`);
    const rgb = new Uint8Array(width * height * 3);
    for (let i = 0, j = 0; i < width * height; i++, j += 4) {
      rgb[3 * i] = d.data[j];
      rgb[3 * i + 1] = d.data[j + 1];
      rgb[3 * i + 2] = d.data[j + 2];
    }
    return { width, height, channels: 3, bitDepth: 8, data: rgb };
  }
  if (bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50) return decodePng(bytes, name);
  throw new PngError(`${name}: not a PNG or JPEG file`);
}

export async function readImage(file: string): Promise<Image> {
  let bytes: Uint8Array;
  try {
    const b = await readFile(file);
    bytes = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new PngError(err.code === 'ENOENT' ? `${file}: no such file` : `${file}: cannot read (${err.message})`);
  }
  return decodeImage(bytes, file);
}
