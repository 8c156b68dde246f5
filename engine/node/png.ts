// Node edge: PNG files in and out (pngjs), with clear errors and atomic writes.
//
// Reading keeps what the file holds: 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA) samples per pixel, 8 or 16 bits
// (1/2/4-bit gray and palettes become 8-bit; a tRNS chunk adds an alpha channel). The header and the chunk layout
// are checked before anything is decoded, so a truncated file or one claiming huge dimensions fails fast with a
// message that names it. Writing goes to a temporary file in the same folder, renamed over the target when
// complete: an error never leaves a partial PNG behind.

import { randomBytes } from 'node:crypto';
import { promises as fsp, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import pngjs from 'pngjs';
import type { PixelImage } from '../image.ts';

const { PNG } = pngjs;

/** The engine's one image type (engine/image.ts PixelImage), under the name the Node edge has used. */
export type Image = PixelImage;

/** The largest width or height read or written by default. */
export const MAX_PNG_SIDE = 16384;
/** The most pixels read by default (64 Mi: 8192 x 8192; pngjs decodes to RGBA, 4-8 bytes a pixel). */
export const MAX_PNG_PIXELS = 64 * 1024 * 1024;

export interface PngLimits {
  maxSide?: number;
  maxPixels?: number;
}

/** A PNG that cannot be read or written; `message` names the file and the problem. */
export class PngError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PngError';
  }
}

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const COLOR_TYPES: Record<number, { name: string; depths: number[] }> = {
  0: { name: 'gray', depths: [1, 2, 4, 8, 16] },
  2: { name: 'RGB', depths: [8, 16] },
  3: { name: 'palette', depths: [1, 2, 4, 8] },
  4: { name: 'gray+alpha', depths: [8, 16] },
  6: { name: 'RGBA', depths: [8, 16] },
};

/** The IHDR fields of a PNG. */
export interface PngHeader {
  width: number;
  height: number;
  bitDepth: number;
  colorType: number;
  interlaced: boolean;
}

/**
 * Check the signature, the IHDR and that every chunk up to IEND is present (no truncation), and the dimensions
 * against the limits. Returns the header. Throws a PngError naming `name`.
 */
export function inspectPng(bytes: Uint8Array, name = 'input', limits: PngLimits = {}): PngHeader {
  const maxSide = limits.maxSide ?? MAX_PNG_SIDE;
  const maxPixels = limits.maxPixels ?? MAX_PNG_PIXELS;
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) {
    const hint = bytes.length === 0 ? 'the file is empty' : 'it does not start with the PNG signature';
    throw new PngError(`${name}: not a PNG file (${hint})`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = (at: number) => String.fromCharCode(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
  if (bytes.length < 8 + 8 + 13 + 4)
    throw new PngError(`${name}: truncated PNG (${bytes.length} bytes; the header is cut off)`);
  if (type(12) !== 'IHDR' || dv.getUint32(8) !== 13)
    throw new PngError(`${name}: corrupt PNG (the first chunk is not a 13-byte IHDR)`);
  const header: PngHeader = {
    width: dv.getUint32(16),
    height: dv.getUint32(20),
    bitDepth: bytes[24],
    colorType: bytes[25],
    interlaced: bytes[28] === 1,
  };
  const { width, height, bitDepth, colorType } = header;
  if (width === 0 || height === 0)
    throw new PngError(`${name}: the PNG is ${width}x${height}: an image needs at least one pixel`);
  if (width > maxSide || height > maxSide || width * height > maxPixels) {
    throw new PngError(
      `${name}: the PNG is ${width}x${height}, over the limit of ${maxSide} pixels a side and ${maxPixels} pixels ` +
        `(${Math.floor(Math.sqrt(maxPixels))}x${Math.floor(Math.sqrt(maxPixels))}); crop or downscale it first`,
    );
  }
  const ct = COLOR_TYPES[colorType];
  if (!ct) throw new PngError(`${name}: corrupt PNG (colour type ${colorType} does not exist)`);
  if (!ct.depths.includes(bitDepth))
    throw new PngError(`${name}: corrupt PNG (${ct.name} with bit depth ${bitDepth} is not allowed)`);
  if (bytes[26] !== 0 || bytes[27] !== 0 || bytes[28] > 1)
    throw new PngError(`${name}: corrupt PNG (unknown compression, filter or interlace method)`);
  // Walk the chunks: each must be complete, IEND must come.
  let pos = 8;
  let sawData = false;
  for (;;) {
    if (pos + 12 > bytes.length) {
      throw new PngError(
        `${name}: truncated PNG (ends at byte ${bytes.length} inside a chunk header${sawData ? ', before IEND' : ''})`,
      );
    }
    const len = dv.getUint32(pos);
    const t = type(pos + 4);
    if (len > 0x7fffffff || pos + 12 + len > bytes.length) {
      throw new PngError(
        `${name}: truncated PNG (the ${JSON.stringify(t)} chunk needs ${len} bytes; the file ends first)`,
      );
    }
    if (t === 'IDAT') sawData = true;
    pos += 12 + len;
    if (t === 'IEND') break;
  }
  if (!sawData) throw new PngError(`${name}: corrupt PNG (no image data)`);
  return header;
}

/** Bytes of filtered scanlines the header calls for (all seven Adam7 passes when interlaced). */
function rawBytes(h: PngHeader): number {
  const samples = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[h.colorType] ?? 1;
  const line = (w: number) => 1 + Math.ceil((w * samples * h.bitDepth) / 8);
  if (!h.interlaced) return h.height * line(h.width);
  const passes = [
    [0, 0, 8, 8],
    [4, 0, 8, 8],
    [0, 4, 4, 8],
    [2, 0, 4, 4],
    [0, 2, 2, 4],
    [1, 0, 2, 2],
    [0, 1, 1, 2],
  ];
  let total = 0;
  for (const [x0, y0, dx, dy] of passes) {
    const pw = h.width > x0 ? Math.ceil((h.width - x0) / dx) : 0;
    const ph = h.height > y0 ? Math.ceil((h.height - y0) / dy) : 0;
    if (pw > 0 && ph > 0) total += ph * line(pw);
  }
  return total;
}

/** Inflate the IDAT stream and check it holds the scanlines the header needs (pngjs does not check). */
function checkImageData(bytes: Uint8Array, header: PngHeader, name: string): void {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const parts: Uint8Array[] = [];
  for (let pos = 8; pos + 12 <= bytes.length; ) {
    const len = dv.getUint32(pos);
    const t = String.fromCharCode(bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]);
    if (t === 'IDAT') parts.push(bytes.subarray(pos + 8, pos + 8 + len));
    if (t === 'IEND') break;
    pos += 12 + len;
  }
  const want = rawBytes(header);
  let got: number;
  try {
    got = inflateSync(Buffer.concat(parts), { maxOutputLength: want }).length;
  } catch (e) {
    // More data than needed is tolerated (as libpng does); only a short or undecodable stream is an error.
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return;
    throw new PngError(`${name}: corrupt PNG (image data: ${(e as Error).message})`);
  }
  if (got < want) {
    throw new PngError(
      `${name}: corrupt PNG (the image data holds ${got} bytes; ${header.width}x${header.height} needs ${want})`,
    );
  }
}

/** Decode PNG bytes (see the top of the file for what comes out). */
export function decodePng(bytes: Uint8Array, name = 'input', limits: PngLimits = {}): Image {
  const header = inspectPng(bytes, name, limits);
  checkImageData(bytes, header, name);
  const sixteen = header.bitDepth === 16;
  let decoded: { width: number; height: number; data: Uint8Array | Uint16Array; alpha?: boolean };
  try {
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    decoded = PNG.sync.read(buf, {
      checkCRC: true,
      skipRescale: sixteen,
    } as pngjs.ParserOptions) as unknown as typeof decoded;
  } catch (e) {
    throw new PngError(`${name}: corrupt PNG (${(e as Error).message})`);
  }
  const { width, height } = header;
  const rgba = decoded.data;
  if (rgba.length !== width * height * 4)
    throw new PngError(`${name}: corrupt PNG (decoded ${rgba.length} samples for ${width}x${height})`);
  const gray = header.colorType === 0 || header.colorType === 4;
  const alpha = header.colorType === 4 || header.colorType === 6 || decoded.alpha === true;
  const channels = ((gray ? 1 : 3) + (alpha ? 1 : 0)) as Image['channels'];
  const n = width * height;
  const data = sixteen ? new Uint16Array(n * channels) : new Uint8Array(n * channels);
  const pick = gray ? (alpha ? [0, 3] : [0]) : alpha ? [0, 1, 2, 3] : [0, 1, 2];
  for (let i = 0; i < n; i++) for (let c = 0; c < channels; c++) data[i * channels + c] = rgba[i * 4 + pick[c]];
  return { width, height, channels, bitDepth: sixteen ? 16 : 8, data };
}

function checkImage(img: Image, name: string): void {
  const { width, height, channels, bitDepth, data } = img;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new PngError(`${name}: cannot write a ${width}x${height} image: an image needs at least one pixel`);
  }
  if (width > MAX_PNG_SIDE || height > MAX_PNG_SIDE)
    throw new PngError(`${name}: cannot write ${width}x${height}: over ${MAX_PNG_SIDE} pixels a side`);
  if (![1, 2, 3, 4].includes(channels)) throw new PngError(`${name}: cannot write ${channels} channels (1 to 4)`);
  if (bitDepth !== 8 && bitDepth !== 16) throw new PngError(`${name}: cannot write bit depth ${bitDepth} (8 or 16)`);
  if (bitDepth === 8 ? !(data instanceof Uint8Array) : !(data instanceof Uint16Array)) {
    throw new PngError(`${name}: ${bitDepth}-bit data must be a ${bitDepth === 8 ? 'Uint8Array' : 'Uint16Array'}`);
  }
  if (data.length !== width * height * channels) {
    throw new PngError(
      `${name}: ${width}x${height}x${channels} needs ${width * height * channels} samples, got ${data.length}`,
    );
  }
}

/** Encode an image as PNG bytes (gray, gray+alpha, RGB or RGBA; 8 or 16 bits, as the image is). */
export function encodePng(img: Image, name = 'output'): Buffer {
  checkImage(img, name);
  const colorType = [0, 0, 4, 2, 6][img.channels];
  // pngjs wants the samples as bytes in machine order (16-bit: a Uint16Array's own buffer, from offset 0).
  const raw =
    img.bitDepth === 8
      ? Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength)
      : Buffer.from(new Uint16Array(img.data).buffer);
  const png = { width: img.width, height: img.height, data: raw };
  return PNG.sync.write(
    png as unknown as pngjs.PNG,
    {
      colorType,
      inputColorType: colorType,
      bitDepth: img.bitDepth,
      inputHasAlpha: img.channels === 2 || img.channels === 4,
    } as pngjs.PackerOptions,
  );
}

function ioMessage(e: unknown, verb: string, file: string): string {
  const err = e as NodeJS.ErrnoException;
  const why: Record<string, string> = {
    ENOENT: verb === 'read' ? 'no such file' : 'its folder does not exist',
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    EISDIR: 'it is a folder',
    ENOTDIR: 'a part of the path is not a folder',
    EROFS: 'read-only file system',
    ENOSPC: 'no space left on the device',
  };
  return `cannot ${verb} ${file}: ${why[err?.code ?? ''] ?? err?.message ?? String(e)}`;
}

/** Read and decode a PNG file. */
export async function readPng(file: string, limits: PngLimits = {}): Promise<Image> {
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(file);
  } catch (e) {
    throw new PngError(ioMessage(e, 'read', file));
  }
  return decodePng(bytes, file, limits);
}

/** Synchronous readPng. */
export function readPngSync(file: string, limits: PngLimits = {}): Image {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new PngError(ioMessage(e, 'read', file));
  }
  return decodePng(bytes, file, limits);
}

const tempName = (file: string) =>
  path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);

/** Encode and write a PNG atomically (temporary file in the same folder, then rename). */
export async function writePng(file: string, img: Image): Promise<void> {
  const bytes = encodePng(img, file);
  const tmp = tempName(file);
  try {
    await fsp.writeFile(tmp, bytes, { flag: 'wx' });
    await fsp.rename(tmp, file);
  } catch (e) {
    await fsp.unlink(tmp).catch(() => {});
    throw new PngError(ioMessage(e, 'write', file));
  }
}

/** Synchronous writePng. */
export function writePngSync(file: string, img: Image): void {
  const bytes = encodePng(img, file);
  const tmp = tempName(file);
  try {
    writeFileSync(tmp, bytes, { flag: 'wx' });
    renameSync(tmp, file);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* never created */
    }
    throw new PngError(ioMessage(e, 'write', file));
  }
}

/** Samples as floats in [0, 1] (v / 255 or v / 65535), same layout. */
export function imageTo01(img: Image): Float32Array {
  const max = img.bitDepth === 16 ? 65535 : 255;
  return Float32Array.from(img.data, (v) => v / max);
}

/** An 8-bit copy of an image (16-bit samples rounded: v * 255 / 65535). */
export function to8Bit(img: Image): Image {
  if (img.bitDepth === 8) return img;
  return { ...img, bitDepth: 8, data: Uint8Array.from(img.data, (v) => Math.round((v * 255) / 65535)) };
}
