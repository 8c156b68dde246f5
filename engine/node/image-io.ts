// Node edge: reading input images (PNG, or JPEG through the small pure-JS `jpeg-js` decoder) and writing PNG.
// `jpeg-js` earns its place: the evaluation photos and most users' photos are JPEG, and it has no dependencies.
import { readFile } from 'node:fs/promises';
import jpeg from 'jpeg-js';
import { decodePng, inspectPng, MAX_PNG_PIXELS, MAX_PNG_SIDE, PngError, type Image, type PngLimits } from './png.ts';

export type { Image };

function isJpeg(b: Uint8Array): boolean {
  return b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;
}

/**
 * A JPEG's width and height from its frame header (the first SOFn marker), without decoding; undefined when no frame
 * header is found (the decoder then says what is wrong).
 */
export function jpegSize(b: Uint8Array): { width: number; height: number } | undefined {
  let pos = 2;
  while (pos + 4 <= b.length) {
    if (b[pos] !== 0xff) return undefined;
    const marker = b[pos + 1];
    if (marker === 0xff) {
      pos++; // fill byte
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      pos += 2; // markers without a length
      continue;
    }
    const len = (b[pos + 2] << 8) | b[pos + 3];
    // SOF0..SOF15 except DHT (c4), JPG (c8) and DAC (cc)
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (pos + 9 > b.length) return undefined;
      return { height: (b[pos + 5] << 8) | b[pos + 6], width: (b[pos + 7] << 8) | b[pos + 8] };
    }
    if (marker === 0xda) return undefined; // image data before any frame header
    pos += 2 + len;
  }
  return undefined;
}

/**
 * Decode PNG or JPEG bytes; `name` is used in error messages. `limits` (default: the PNG reader's) are checked against
 * the header's size before anything is decoded, so an image too large for what follows costs no memory.
 */
export function decodeImage(bytes: Uint8Array, name: string, limits: PngLimits = {}): Image {
  const maxSide = limits.maxSide ?? MAX_PNG_SIDE;
  const maxPixels = limits.maxPixels ?? MAX_PNG_PIXELS;
  if (isJpeg(bytes)) {
    const size = jpegSize(bytes);
    if (size && (size.width > maxSide || size.height > maxSide || size.width * size.height > maxPixels)) {
      throw new PngError(
        `${name}: the JPEG is ${size.width}x${size.height}, over the limit of ${maxSide} pixels a side and ${maxPixels} pixels; crop or downscale it first`,
      );
    }
    let d: { width: number; height: number; data: Uint8Array };
    try {
      d = jpeg.decode(bytes, {
        useTArray: true,
        formatAsRGBA: true,
        maxResolutionInMP: maxPixels / 1e6,
        maxMemoryUsageInMB: 2048,
      });
    } catch (e) {
      throw new PngError(`${name}: corrupt or unsupported JPEG (${(e as Error).message})`);
    }
    const { width, height } = d;
    if (width < 1 || height < 1) throw new PngError(`${name}: the JPEG is empty (${width}x${height})`);
    if (width > maxSide || height > maxSide)
      throw new PngError(`${name}: ${width}x${height} is over ${maxSide} pixels a side`);
    const rgb = new Uint8Array(width * height * 3);
    for (let i = 0, j = 0; i < width * height; i++, j += 4) {
      rgb[3 * i] = d.data[j];
      rgb[3 * i + 1] = d.data[j + 1];
      rgb[3 * i + 2] = d.data[j + 2];
    }
    return { width, height, channels: 3, bitDepth: 8, data: rgb };
  }
  if (bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50) return decodePng(bytes, name, limits);
  throw new PngError(`${name}: not a PNG or JPEG file`);
}

/** An image's width and height from its header (PNG: also checked for truncation), without decoding. */
export function imageSize(bytes: Uint8Array, name: string): { width: number; height: number } {
  if (isJpeg(bytes)) {
    const size = jpegSize(bytes);
    if (!size) throw new PngError(`${name}: corrupt or unsupported JPEG (no frame header before the image data)`);
    if (size.width < 1 || size.height < 1)
      throw new PngError(`${name}: the JPEG is empty (${size.width}x${size.height})`);
    return size;
  }
  if (bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50)
    return inspectPng(bytes, name, { maxSide: Infinity, maxPixels: Infinity });
  throw new PngError(`${name}: not a PNG or JPEG file`);
}

export async function readImage(file: string, limits: PngLimits = {}): Promise<Image> {
  return decodeImage(await readImageBytes(file), file, limits);
}

/** A file's bytes, with errors that name it. */
export async function readImageBytes(file: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    const b = await readFile(file);
    bytes = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new PngError(err.code === 'ENOENT' ? `${file}: no such file` : `${file}: cannot read (${err.message})`);
  }
  return bytes;
}
