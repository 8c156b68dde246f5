// Test support: build pickles and torch-style zip checkpoints by hand, byte by byte, without PyTorch.
// Used by test/weights-*.test.ts to make well-formed, unusual (strided, big-endian, deflated) and hostile inputs.

import * as assert from 'uvu/assert';
import { writeZip } from '../../weights-format/zip.ts';

/**
 * Assert that fn throws one of our own errors (an Error, never a TypeError/RangeError escaping from a parser) whose
 * message matches re; returns it.
 */
export function throwsClean(fn: () => unknown, re: RegExp, what: string): Error {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof Error, `${what}: threw a non-Error`);
    assert.not.ok(e instanceof TypeError || e instanceof RangeError, `${what}: crashed with ${(e as Error).stack}`);
    assert.match((e as Error).message, re, `${what}: message ${(e as Error).message}`);
    return e as Error;
  }
  assert.unreachable(`${what}: accepted`);
  throw new Error('unreachable');
}

/** A small deterministic random generator in [0, 1) for fuzz loops. */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s / 2 ** 32;
  };
}

/** A tiny pickle assembler: each method appends one opcode. */
export class PickleBuilder {
  private parts: number[] = [];
  bytes(b: ArrayLike<number>): this {
    for (let i = 0; i < b.length; i++) this.parts.push(b[i] & 0xff);
    return this;
  }
  op(code: number): this {
    return this.bytes([code]);
  }
  proto(v = 2): this {
    return this.bytes([0x80, v]);
  }
  mark(): this {
    return this.op(0x28);
  }
  stop(): this {
    return this.op(0x2e);
  }
  unicode(s: string): this {
    const b = new TextEncoder().encode(s);
    this.op(0x58).u32(b.length);
    return this.bytes(b);
  }
  int(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, v, true);
    return this.op(0x4a).bytes(b);
  }
  u32(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    return this.bytes(b);
  }
  global(module: string, name: string): this {
    return this.op(0x63).bytes(new TextEncoder().encode(`${module}\n${name}\n`));
  }
  stackGlobal(module: string, name: string): this {
    const m = new TextEncoder().encode(module);
    const n = new TextEncoder().encode(name);
    return this.op(0x8c).bytes([m.length]).bytes(m).op(0x8c).bytes([n.length]).bytes(n).op(0x93);
  }
  tuple(): this {
    return this.op(0x74);
  }
  intTuple(xs: number[]): this {
    this.mark();
    for (const x of xs) this.int(x);
    return this.tuple();
  }
  reduce(): this {
    return this.op(0x52);
  }
  build(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

export interface FakeTensor {
  /** torch storage class name, e.g. "FloatStorage". */
  storage: string;
  /** storage record key ("0", "1", ...). */
  key: string;
  /** elements in the storage. */
  numel: number;
  offset: number;
  size: number[];
  stride: number[];
}

/** The pickle torch.save writes for a state_dict {name: tensor} (protocol 2, _rebuild_tensor_v2, persistent ids). */
export function stateDictPickle(
  tensors: Array<[string, FakeTensor]>,
  ordered = true,
  withMetadata = false,
): Uint8Array {
  const p = new PickleBuilder().proto(2);
  if (ordered) p.global('collections', 'OrderedDict').op(0x29).reduce();
  else p.op(0x7d);
  p.mark();
  for (const [name, t] of tensors) {
    p.unicode(name).global('torch._utils', '_rebuild_tensor_v2').mark();
    p.mark().unicode('storage').global('torch', t.storage).unicode(t.key).unicode('cpu').int(t.numel).tuple().op(0x51);
    p.int(t.offset).intTuple(t.size).intTuple(t.stride).op(0x89);
    p.global('collections', 'OrderedDict').op(0x29).reduce();
    p.tuple().reduce();
  }
  p.op(0x75); // SETITEMS
  if (withMetadata) {
    // state_dict()'s `_metadata` attribute: BUILD with {'_metadata': OrderedDict({'': {'version': 1}})}
    p.op(0x7d).unicode('_metadata').global('collections', 'OrderedDict').op(0x29).reduce();
    p.unicode('').op(0x7d).unicode('version').int(1).op(0x73).op(0x73); // SETITEM x2
    p.op(0x73).op(0x62); // SETITEM, BUILD
  }
  return p.stop().build();
}

/** A torch-style zip checkpoint around a data.pkl and storage records. `deflate` compresses (raw deflate) when given. */
export function fakePth(opts: {
  pickle: Uint8Array;
  storages: Record<string, Uint8Array>;
  archive?: string;
  byteorder?: 'little' | 'big' | null;
  deflate?: (b: Uint8Array) => Uint8Array;
  omit?: string[];
}): Uint8Array {
  const a = opts.archive ?? 'archive';
  const files: Array<{ name: string; data: Uint8Array; deflated?: Uint8Array }> = [];
  const add = (name: string, data: Uint8Array) => {
    if (opts.omit?.includes(name)) return;
    files.push({ name: `${a}/${name}`, data, deflated: opts.deflate ? opts.deflate(data) : undefined });
  };
  add('data.pkl', opts.pickle);
  if (opts.byteorder !== null) add('byteorder', new TextEncoder().encode(opts.byteorder ?? 'little'));
  for (const [k, v] of Object.entries(opts.storages)) add(`data/${k}`, v);
  add('version', new TextEncoder().encode('3\n'));
  return writeZip(files);
}
