// safetensors reader and writer that validate everything before trusting it.
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON {name: {dtype, shape, data_offsets}, __metadata__},
// then the data section; data_offsets are relative to the data section.
// Pure TypeScript on Uint8Array: no Node imports.

import {
  type DType,
  DTYPES,
  dtypeSize,
  isDType,
  HOST_LITTLE_ENDIAN,
  f16BitsToF32,
  bf16BitsToF32,
  f32ToF16Bits,
  f32ToBF16Bits,
} from './dtypes.ts';
import { isPlainObject } from './util.ts';

export type { DType } from './dtypes.ts';

export interface TensorEntry {
  dtype: DType;
  shape: number[];
  /** Raw little-endian bytes, row-major (C order). Entries returned by readSafetensors are views into its input. */
  data: Uint8Array;
}

/** The biggest header we accept (the reference safetensors implementation uses the same limit). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const hasOwn = (o: object, k: string): boolean => Object.hasOwn(o, k);

/** Number of elements of a shape; throws when a dimension is not a non-negative safe integer or the product overflows. */
export function shapeNumel(shape: readonly number[], what = 'tensor'): number {
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new Error(`${what}: shape ${JSON.stringify(shape)} has a dimension that is not a non-negative integer`);
    }
    n *= d;
    if (!Number.isSafeInteger(n)) throw new Error(`${what}: shape ${JSON.stringify(shape)} is impossibly large`);
  }
  return n;
}

/**
 * Parse and validate a safetensors file: header length against the file size, UTF-8 JSON object, known dtypes,
 * shapes of non-negative integers, shape x dtype = bytes for every tensor, offsets in range, and the tensors tiling the
 * data section exactly (sorted by offset: no overlap, no gap, nothing after the last one), as the reference
 * implementation requires. Metadata must map strings to strings. Names are plain data: the returned metadata object
 * has no prototype, so keys like "__proto__" are ordinary keys. Tensors come in data-offset order.
 */
export function readSafetensors(bytes: Uint8Array): {
  metadata: Record<string, string>;
  tensors: Map<string, TensorEntry>;
} {
  if (!(bytes instanceof Uint8Array)) throw new Error('safetensors: expected the file contents as a Uint8Array');
  if (bytes.length < 8) {
    throw new Error(
      `safetensors: the file is ${bytes.length} bytes, too short for the 8-byte header length: truncated, or not a safetensors file`,
    );
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const nBig = dv.getBigUint64(0, true);
  if (nBig > BigInt(bytes.length - 8)) {
    throw new Error(
      `safetensors: the header claims ${nBig} bytes but only ${bytes.length - 8} follow the length field: the file is truncated or not a safetensors file`,
    );
  }
  const n = Number(nBig);
  if (n > MAX_HEADER_BYTES)
    throw new Error(`safetensors: header of ${n} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  if (n < 2) throw new Error(`safetensors: header length ${n} is too small to hold a JSON object`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    throw new Error('safetensors: the header is not valid UTF-8 (corrupt file, or not a safetensors file)');
  }
  if (text[0] !== '{')
    throw new Error("safetensors: the header does not start with '{' (corrupt file, or not a safetensors file)");
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw new Error(`safetensors: the header is not valid JSON (${(e as Error).message}); the file is corrupt`);
  }
  if (!isPlainObject(header)) throw new Error('safetensors: the header is not a JSON object');

  const dataStart = 8 + n;
  const dataLen = bytes.length - dataStart;
  const metadata: Record<string, string> = Object.create(null);
  const items: { name: string; dtype: DType; shape: number[]; start: number; end: number }[] = [];

  for (const name of Object.keys(header)) {
    const v = header[name];
    if (name === '__metadata__') {
      if (!isPlainObject(v)) throw new Error('safetensors: __metadata__ must be an object of strings');
      for (const k of Object.keys(v)) {
        const s = v[k];
        if (typeof s !== 'string')
          throw new Error(`safetensors: __metadata__ value for ${JSON.stringify(k)} is not a string`);
        Object.defineProperty(metadata, k, { value: s, enumerable: true, writable: true, configurable: true });
      }
      continue;
    }
    const what = `safetensors: tensor ${JSON.stringify(name)}`;
    if (name.length === 0) throw new Error('safetensors: a tensor has an empty name');
    if (!isPlainObject(v)) throw new Error(`${what}: header entry is not an object`);
    if (!hasOwn(v, 'dtype') || !isDType(v.dtype)) {
      throw new Error(
        `${what}: dtype ${JSON.stringify(hasOwn(v, 'dtype') ? v.dtype : undefined)} is not one of ${DTYPES.join(', ')}`,
      );
    }
    if (!hasOwn(v, 'shape') || !Array.isArray(v.shape)) throw new Error(`${what}: shape is missing or not an array`);
    const shape = v.shape as number[];
    const numel = shapeNumel(shape, what);
    const offs = hasOwn(v, 'data_offsets') ? v.data_offsets : undefined;
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      !offs.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)
    ) {
      throw new Error(`${what}: data_offsets must be two non-negative integers [start, end]`);
    }
    const [start, end] = offs as [number, number];
    if (end < start) throw new Error(`${what}: data_offsets [${start}, ${end}] end before they start`);
    if (end > dataLen) {
      throw new Error(
        `${what}: data_offsets [${start}, ${end}] run past the end of the data section (${dataLen} bytes): truncated or corrupt file`,
      );
    }
    const want = numel * dtypeSize(v.dtype);
    if (end - start !== want) {
      throw new Error(
        `${what}: shape ${JSON.stringify(shape)} x ${v.dtype} needs ${want} bytes but data_offsets [${start}, ${end}] span ${end - start}`,
      );
    }
    items.push({ name, dtype: v.dtype, shape: shape.slice(), start, end });
  }

  const sorted = items.slice().sort((a, b) => a.start - b.start || a.end - b.end);
  let pos = 0;
  for (const it of sorted) {
    if (it.start !== pos) {
      throw new Error(
        it.start < pos
          ? `safetensors: tensor ${JSON.stringify(it.name)} at [${it.start}, ${it.end}] overlaps the previous tensor, which ends at ${pos}`
          : `safetensors: ${it.start - pos} bytes at data offset ${pos} belong to no tensor (before ${JSON.stringify(it.name)}); the header is inconsistent`,
      );
    }
    pos = it.end;
  }
  if (pos !== dataLen) {
    throw new Error(
      `safetensors: ${dataLen - pos} bytes after the last tensor belong to no tensor; the header is inconsistent`,
    );
  }

  const tensors = new Map<string, TensorEntry>();
  for (const it of sorted) {
    tensors.set(it.name, {
      dtype: it.dtype,
      shape: it.shape,
      data: bytes.subarray(dataStart + it.start, dataStart + it.end),
    });
  }
  return { metadata, tensors };
}

/**
 * Serialise tensors (and string metadata) to safetensors. The header is padded with spaces so the data section starts
 * on an 8-byte boundary; tensors are laid out without gaps in the given order, except that wider element types are
 * placed first (stable) so that every tensor starts at a multiple of its element size.
 */
export function writeSafetensors(
  tensors: Map<string, TensorEntry> | Array<[string, TensorEntry]>,
  metadata?: Record<string, string>,
): Uint8Array {
  const list = Array.isArray(tensors) ? tensors : [...tensors];
  const seen = new Set<string>();
  for (const [name, t] of list) {
    if (typeof name !== 'string' || name.length === 0)
      throw new Error('writeSafetensors: tensor names must be non-empty strings');
    if (name === '__metadata__')
      throw new Error('writeSafetensors: "__metadata__" is reserved and cannot name a tensor');
    if (seen.has(name)) throw new Error(`writeSafetensors: tensor ${JSON.stringify(name)} appears twice`);
    seen.add(name);
    if (!isDType(t.dtype))
      throw new Error(`writeSafetensors: tensor ${JSON.stringify(name)} has unknown dtype ${JSON.stringify(t.dtype)}`);
    const want = shapeNumel(t.shape, `writeSafetensors: tensor ${JSON.stringify(name)}`) * dtypeSize(t.dtype);
    if (!(t.data instanceof Uint8Array) || t.data.length !== want) {
      throw new Error(
        `writeSafetensors: tensor ${JSON.stringify(name)} shape ${JSON.stringify(t.shape)} x ${t.dtype} needs ${want} bytes, got ${t.data?.length}`,
      );
    }
  }
  const order = list
    .map((e, i) => ({ e, i }))
    .sort((a, b) => dtypeSize(b.e[1].dtype) - dtypeSize(a.e[1].dtype) || a.i - b.i)
    .map((x) => x.e);

  const parts: string[] = [];
  if (metadata) {
    const m: string[] = [];
    for (const k of Object.keys(metadata)) {
      const v = metadata[k];
      if (typeof v !== 'string')
        throw new Error(`writeSafetensors: metadata value for ${JSON.stringify(k)} is not a string`);
      m.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
    }
    parts.push(`"__metadata__":{${m.join(',')}}`);
  }
  let off = 0;
  for (const [name, t] of order) {
    const end = off + t.data.length;
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${off},${end}]}`,
    );
    off = end;
  }
  let headerBytes = new TextEncoder().encode(`{${parts.join(',')}}`);
  const padded = Math.ceil((8 + headerBytes.length) / 8) * 8 - 8;
  if (padded !== headerBytes.length) {
    const h = new Uint8Array(padded).fill(0x20);
    h.set(headerBytes);
    headerBytes = h;
  }
  const out = new Uint8Array(8 + headerBytes.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let p = 8 + headerBytes.length;
  for (const [, t] of order) {
    out.set(t.data, p);
    p += t.data.length;
  }
  return out;
}

/** Copy of the tensor's values as float32 (F32, F16, BF16, F64 and the integer types; F64 and 64-bit ints rounded). */
export function toFloat32(t: TensorEntry): Float32Array<ArrayBuffer> {
  const n = shapeNumel(t.shape);
  const es = dtypeSize(t.dtype);
  if (t.data.length !== n * es) {
    throw new Error(
      `toFloat32: shape ${JSON.stringify(t.shape)} x ${t.dtype} needs ${n * es} bytes, got ${t.data.length}`,
    );
  }
  const out = new Float32Array(n);
  const d = t.data;
  if (t.dtype === 'F32' && HOST_LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(d);
    return out;
  }
  const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
  switch (t.dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
      break;
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
      break;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = f16BitsToF32(d[2 * i] | (d[2 * i + 1] << 8));
      break;
    case 'BF16':
      for (let i = 0; i < n; i++) out[i] = bf16BitsToF32(d[2 * i] | (d[2 * i + 1] << 8));
      break;
    case 'I64':
      for (let i = 0; i < n; i++) out[i] = Number(dv.getBigInt64(8 * i, true));
      break;
    case 'U64':
      for (let i = 0; i < n; i++) out[i] = Number(dv.getBigUint64(8 * i, true));
      break;
    case 'I32':
      for (let i = 0; i < n; i++) out[i] = dv.getInt32(4 * i, true);
      break;
    case 'U32':
      for (let i = 0; i < n; i++) out[i] = dv.getUint32(4 * i, true);
      break;
    case 'I16':
      for (let i = 0; i < n; i++) out[i] = dv.getInt16(2 * i, true);
      break;
    case 'U16':
      for (let i = 0; i < n; i++) out[i] = dv.getUint16(2 * i, true);
      break;
    case 'I8':
      for (let i = 0; i < n; i++) out[i] = dv.getInt8(i);
      break;
    case 'U8':
    case 'BOOL':
      for (let i = 0; i < n; i++) out[i] = d[i];
      break;
  }
  return out;
}

/** A float32 tensor entry owning a little-endian copy of `data`. */
export function f32Entry(shape: number[], data: Float32Array): TensorEntry {
  const n = shapeNumel(shape, 'f32Entry');
  if (data.length !== n)
    throw new Error(`f32Entry: shape ${JSON.stringify(shape)} has ${n} elements but data has ${data.length}`);
  const bytes = new Uint8Array(n * 4);
  if (HOST_LITTLE_ENDIAN) bytes.set(new Uint8Array(data.buffer, data.byteOffset, n * 4));
  else {
    const dv = new DataView(bytes.buffer);
    for (let i = 0; i < n; i++) dv.setFloat32(4 * i, data[i], true);
  }
  return { dtype: 'F32', shape: shape.slice(), data: bytes };
}

/**
 * Convert a float tensor to F32, F16 or BF16 (round to nearest even). Throws, naming the tensor, when a finite value
 * would overflow the target type (F16's largest finite value is 65504).
 */
export function castFloat(t: TensorEntry, to: 'F32' | 'F16' | 'BF16', name = 'tensor'): TensorEntry {
  if (t.dtype === to) return t;
  const v = toFloat32(t);
  if (to === 'F32') return f32Entry(t.shape, v);
  const out = new Uint8Array(v.length * 2);
  const conv = to === 'F16' ? f32ToF16Bits : f32ToBF16Bits;
  for (let i = 0; i < v.length; i++) {
    const h = conv(v[i]);
    if ((h & 0x7fff) === (to === 'F16' ? 0x7c00 : 0x7f80) && Number.isFinite(v[i])) {
      throw new Error(`${name}: value ${v[i]} at index ${i} does not fit in ${to}; keep this model in F32`);
    }
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >>> 8;
  }
  return { dtype: to, shape: t.shape.slice(), data: out };
}

/**
 * The first NaN or infinity in a float tensor and how many it holds, read from the exponent bits (no float copy);
 * undefined when every value is finite (or the dtype is not a float).
 */
export function nonFinite(t: TensorEntry): { index: number; value: number; count: number } | undefined {
  const d = t.data;
  // es: element size; hi: offset of the byte holding the exponent's top bits; test(hi, next): all exponent bits set
  const forms: Partial<Record<DType, [number, (i: number) => boolean]>> = {
    F64: [8, (o) => (d[o + 7] & 0x7f) === 0x7f && (d[o + 6] & 0xf0) === 0xf0],
    F32: [4, (o) => (d[o + 3] & 0x7f) === 0x7f && (d[o + 2] & 0x80) === 0x80],
    BF16: [2, (o) => (d[o + 1] & 0x7f) === 0x7f && (d[o] & 0x80) === 0x80],
    F16: [2, (o) => (d[o + 1] & 0x7c) === 0x7c],
  };
  const form = forms[t.dtype];
  if (!form) return undefined;
  const [es, bad] = form;
  let first = -1;
  let count = 0;
  for (let o = 0, i = 0; o + es <= d.length; o += es, i++) {
    if (bad(o)) {
      if (first < 0) first = i;
      count++;
    }
  }
  if (first < 0) return undefined;
  const one = toFloat32({ dtype: t.dtype, shape: [1], data: d.subarray(first * es, (first + 1) * es) });
  return { index: first, value: one[0], count };
}
