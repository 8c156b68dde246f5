// Reading PyTorch (>= 1.6, zip) checkpoints holding a state_dict, without executing anything from the file.
// Pure TypeScript: decompression is injected.

import { dtypeSize } from './dtypes.ts';
import type { TensorEntry } from './safetensors.ts';
import { shapeNumel } from './safetensors.ts';
import { PyDict, PyTensor, STORAGE_TYPES, unpickle, type StorageRef } from './pickle.ts';
import {
  isZip,
  readZipDirectory,
  extractEntry,
  extractEntryAsync,
  type InflateRaw,
  type InflateRawSync,
  type ZipEntry,
} from './zip.ts';

export interface PthStateDict {
  /** name -> tensor, in the checkpoint's order; data is little-endian and contiguous (row-major). */
  tensors: Map<string, TensorEntry>;
  /** The archive's top folder name (torch uses the file name without extension). */
  archive: string;
  /** The storages' byte order as recorded by torch ("little" when the record is absent). */
  byteorder: 'little' | 'big';
}

/** Explain, as an Error, why these bytes are not a checkpoint we can read, or return undefined when they look like one. */
export function sniffPthProblem(bytes: Uint8Array): Error | undefined {
  if (isZip(bytes)) return undefined;
  if (bytes.length >= 2 && bytes[0] === 0x80 && bytes[1] >= 2 && bytes[1] <= 5) {
    return new Error(
      'this is a legacy (pre-1.6, non-zip) torch.save checkpoint, which sr3-wgsl does not read. Re-save it with ' +
        "PyTorch >= 1.6: python -c \"import torch; torch.save(torch.load('old.pth', weights_only=True), 'new.pth')\"",
    );
  }
  if (bytes.length >= 262 && String.fromCharCode(...bytes.subarray(257, 262)) === 'ustar') {
    return new Error(
      'this is a legacy tar-format torch.save checkpoint (PyTorch < 0.4), which sr3-wgsl does not read. Re-save it ' +
        'with PyTorch >= 1.6 (torch.save(torch.load(old), new)).',
    );
  }
  return new Error(
    `not a PyTorch checkpoint: a .pth written by torch.save (PyTorch >= 1.6) is a zip archive, but this file starts with ` +
      `${[...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ') || 'nothing'}${bytes.length < 4 ? ' (it is truncated)' : ''}`,
  );
}

interface Layout {
  entries: Map<string, ZipEntry>;
  archive: string;
  pkl: ZipEntry;
  byteorder?: ZipEntry;
}

function layout(bytes: Uint8Array): Layout {
  const problem = sniffPthProblem(bytes);
  if (problem) throw problem;
  const entries = readZipDirectory(bytes);
  const pkls = [...entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n) || n === 'data.pkl');
  if (pkls.length === 0) {
    throw new Error('this zip is not a PyTorch checkpoint: it has no <archive>/data.pkl entry (missing or damaged)');
  }
  if (pkls.length > 1)
    throw new Error(`this zip holds ${pkls.length} data.pkl entries; refusing an ambiguous checkpoint`);
  const pkl = entries.get(pkls[0])!;
  // Sizes the archive declares are checked before anything is inflated: a small file promising a gigabyte pickle or
  // storage (a zip bomb, or a damaged directory) is refused without allocating it.
  if (pkl.size > MAX_PICKLE_BYTES) {
    throw new Error(
      `checkpoint: its pickle ${pkls[0]} declares ${pkl.size} bytes; a state_dict's pickle takes about 130 bytes a tensor ` +
        `(the reference 4x model's: 40 KB), and over ${MAX_PICKLE_BYTES} bytes is not a checkpoint; corrupt or hostile file`,
    );
  }
  const limit = expansionLimit(bytes);
  for (const e of entries.values()) {
    if (e.size > limit) {
      throw new Error(
        `checkpoint: zip entry ${JSON.stringify(e.name)} declares ${e.size} bytes, more than a ${bytes.length}-byte file can hold as ` +
          `tensors (${limit} bytes); corrupt or hostile checkpoint`,
      );
    }
  }
  const archive = pkls[0].includes('/') ? pkls[0].slice(0, pkls[0].indexOf('/')) : '';
  const pre = archive ? `${archive}/` : '';
  return { entries, archive, pkl, byteorder: entries.get(`${pre}byteorder`) };
}

function parseByteorder(raw: Uint8Array | undefined): 'little' | 'big' {
  if (!raw) return 'little';
  const s = new TextDecoder().decode(raw).trim();
  if (s === 'little' || s === 'big') return s;
  throw new Error(`checkpoint: byteorder record says ${JSON.stringify(s.slice(0, 20))}, expected "little" or "big"`);
}

/** Walk the unpickled object down to the name -> PyTensor map of a state_dict. */
function stateDictOf(root: unknown): Map<string, PyTensor> {
  if (!(root instanceof PyDict)) throw new Error('checkpoint: the pickle does not hold a dict (expected a state_dict)');
  let d = root;
  const keys = [...d.map.keys()];
  if (keys.includes('optimizer') && (keys.includes('iter') || keys.includes('epoch'))) {
    throw new Error(
      "checkpoint: this is the reference trainer's optimizer state (*_opt.pth), not the model; convert the *_gen.pth saved next to it",
    );
  }
  for (const wrap of ['state_dict', 'model', 'netG']) {
    const inner = d.map.get(wrap);
    if (inner instanceof PyDict && ![...d.map.values()].every((v) => v instanceof PyTensor)) {
      d = inner;
      break;
    }
  }
  const out = new Map<string, PyTensor>();
  for (const [k, v] of d.map) {
    if (typeof k !== 'string') throw new Error(`checkpoint: state_dict key ${String(k)} is not a string`);
    if (!(v instanceof PyTensor)) {
      throw new Error(
        `checkpoint: state_dict entry ${JSON.stringify(k)} is not a tensor; expected a plain state_dict of tensors`,
      );
    }
    out.set(k, v);
  }
  if (out.size === 0) throw new Error('checkpoint: the state_dict is empty');
  return out;
}

/** Copy the strided view `t` of storage bytes `raw` into a contiguous little-endian tensor. */
function materialize(name: string, t: PyTensor, raw: Uint8Array, big: boolean): TensorEntry {
  const dtype = STORAGE_TYPES[t.storage.storageType];
  const es = dtypeSize(dtype);
  const what = `checkpoint tensor ${JSON.stringify(name)}`;
  if (raw.length !== t.storage.numel * es) {
    throw new Error(
      `${what}: its storage record holds ${raw.length} bytes but the pickle declares ${t.storage.numel} x ${dtype} (${t.storage.numel * es} bytes); corrupt checkpoint`,
    );
  }
  const numel = shapeNumel(t.size, what);
  // A view can repeat storage elements (stride 0), but not into gigabytes out of a few bytes.
  if (numel * es > Math.max(16 * raw.length, 1 << 20) || numel * es > 0x7fffffff) {
    throw new Error(
      `${what}: a view of ${numel} elements over a ${t.storage.numel}-element storage is implausibly large; corrupt or hostile checkpoint`,
    );
  }
  const out = new Uint8Array(numel * es);
  if (numel > 0) {
    let last = t.offset;
    for (let i = 0; i < t.size.length; i++) last += (t.size[i] - 1) * t.stride[i];
    if (last >= t.storage.numel) {
      throw new Error(
        `${what}: size ${JSON.stringify(t.size)}, stride ${JSON.stringify(t.stride)} at offset ${t.offset} reaches element ${last} of a ${t.storage.numel}-element storage; corrupt checkpoint`,
      );
    }
    // Contiguous (row-major, ignoring size-1 dims)?
    let contiguous = true;
    let expect = 1;
    for (let i = t.size.length - 1; i >= 0; i--) {
      if (t.size[i] !== 1 && t.stride[i] !== expect) contiguous = false;
      expect *= t.size[i];
    }
    if (contiguous) {
      out.set(raw.subarray(t.offset * es, (t.offset + numel) * es));
    } else {
      // General strided gather, one element at a time (rare in state_dicts: transposed or sliced parameters).
      const rank = t.size.length;
      const idx = new Array<number>(rank).fill(0);
      let src = t.offset;
      for (let k = 0; k < numel; k++) {
        out.set(raw.subarray(src * es, src * es + es), k * es);
        for (let d = rank - 1; d >= 0; d--) {
          idx[d]++;
          src += t.stride[d];
          if (idx[d] < t.size[d]) break;
          src -= t.stride[d] * t.size[d];
          idx[d] = 0;
        }
      }
    }
    if (big && es > 1) {
      for (let p = 0; p < out.length; p += es) out.subarray(p, p + es).reverse();
    }
  }
  return { dtype, shape: t.size.slice(), data: out };
}

function assemble(
  limit: number,
  archive: string,
  sd: Map<string, PyTensor>,
  byteorder: 'little' | 'big',
  load: (ref: StorageRef) => Uint8Array,
): PthStateDict {
  const tensors = new Map<string, TensorEntry>();
  const cache = new Map<string, Uint8Array>();
  let total = 0;
  for (const [name, t] of sd) {
    let raw = cache.get(t.storage.key);
    if (!raw) {
      raw = load(t.storage);
      cache.set(t.storage.key, raw);
    }
    const e = materialize(name, t, raw, byteorder === 'big');
    total += e.data.length;
    if (total > limit) {
      throw new Error(
        `checkpoint: its tensors expand to more than ${limit} bytes, far more than the file holds; corrupt or hostile checkpoint`,
      );
    }
    tensors.set(name, e);
  }
  return { tensors, archive, byteorder };
}

/** The largest pickle we inflate and read (a state_dict's: about 130 bytes a tensor, so this is >100,000 tensors). */
export const MAX_PICKLE_BYTES = 16 << 20;

/** Total tensor bytes we accept from a checkpoint: a few times its own size (deflate, views sharing storages). */
function expansionLimit(bytes: Uint8Array): number {
  return 16 * bytes.length + (64 << 20);
}

function storageEntry(l: Layout, ref: StorageRef): ZipEntry {
  const pre = l.archive ? `${l.archive}/` : '';
  const e = l.entries.get(`${pre}data/${ref.key}`);
  if (!e) {
    throw new Error(
      `checkpoint: storage record ${pre}data/${ref.key} is missing from the zip; the file is truncated or damaged`,
    );
  }
  return e;
}

/** Read a state_dict from a PyTorch zip checkpoint. Deflated entries need `inflate` (Node: zlib.inflateRawSync). */
export function readPth(bytes: Uint8Array, opts: { inflate?: InflateRawSync } = {}): PthStateDict {
  const l = layout(bytes);
  const byteorder = parseByteorder(l.byteorder && extractEntry(bytes, l.byteorder, opts.inflate));
  const sd = stateDictOf(unpickle(extractEntry(bytes, l.pkl, opts.inflate)));
  return assemble(expansionLimit(bytes), l.archive, sd, byteorder, (ref) =>
    extractEntry(bytes, storageEntry(l, ref), opts.inflate),
  );
}

/** As readPth, with an async inflate (browsers: DecompressionStream('deflate-raw')). */
export async function readPthAsync(bytes: Uint8Array, opts: { inflate?: InflateRaw } = {}): Promise<PthStateDict> {
  const l = layout(bytes);
  const byteorder = parseByteorder(l.byteorder && (await extractEntryAsync(bytes, l.byteorder, opts.inflate)));
  const sd = stateDictOf(unpickle(await extractEntryAsync(bytes, l.pkl, opts.inflate)));
  const raws = new Map<string, Uint8Array>();
  for (const t of sd.values()) {
    if (!raws.has(t.storage.key))
      raws.set(t.storage.key, await extractEntryAsync(bytes, storageEntry(l, t.storage), opts.inflate));
  }
  return assemble(expansionLimit(bytes), l.archive, sd, byteorder, (ref) => raws.get(ref.key)!);
}
