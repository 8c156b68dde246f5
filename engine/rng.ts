// Gaussian noise on the GPU from a counter-based generator (Philox4x32-10 + Box-Muller; see shaders/rng.ts).
//
//   const rng = await GaussianRng.create(ctx);
//   const fill = rng.fill({ out, n, seed: 42, stream: t });   // a recorded dispatch, replayable
//   ctx.run([fill.dispatch]);
//
// Noise element i of (seed, stream, sub) is a pure function of those four numbers: the same on every run and for
// every dispatch shape. Use one `stream` per sampling step (or a GPU-side step counter, `streamTable`) and `sub` for
// the sample/image index. Browser-safe: imports nothing from Node.

import { ceilDiv, type Dispatch, type GpuContext } from './gpu.ts';
import { COUNTER_ADD_UNIFORM, COUNTER_ADD_WGSL, gaussianWgsl, PHILOX_RAW_WGSL, RNG_UNIFORM } from '../shaders/rng.ts';

/** A seed: an integer 0 .. 2^64-1 (a number up to 2^53-1, or a bigint). */
export type Seed = number | bigint;

/** Threads per workgroup of the RNG kernels (each thread makes 4 values). */
const WG = 256;
/** The most workgroups per dispatch dimension WebGPU guarantees. */
const MAX_GROUPS = 65535;

/** The 64-bit key of a seed as [lo, hi] u32 words; throws on negatives, fractions and values over 2^64-1. */
export function seedWords(seed: Seed): [number, number] {
  let s: bigint;
  if (typeof seed === 'bigint') s = seed;
  else {
    if (!Number.isSafeInteger(seed))
      throw new Error(`rng: the seed must be an integer from 0 to 2^53-1 (or a bigint), got ${seed}`);
    s = BigInt(seed);
  }
  if (s < 0n || s > 0xffffffffffffffffn) throw new Error(`rng: the seed must be from 0 to 2^64-1, got ${s}`);
  return [Number(s & 0xffffffffn), Number(s >> 32n)];
}

/** Workgroups [x, y] covering `threads` threads of WG each, x <= 65535 (the shader folds y into the index). */
export function rngWorkgroups(threads: number): [number, number] {
  const groups = Math.max(1, ceilDiv(threads, WG));
  if (groups <= MAX_GROUPS) return [groups, 1];
  const y = ceilDiv(groups, MAX_GROUPS);
  return [ceilDiv(groups, y), y];
}

function u32(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
    throw new Error(`rng: ${name} must be an integer from 0 to 2^32-1, got ${v}`);
  return v;
}

export interface FillOptions {
  /** Storage buffer of f32 (u32 for raw) written at [offset, offset + n). */
  out: GPUBuffer;
  /** How many values (at most 2^32-4: the block counter is 32 bits). */
  n: number;
  /** Element offset into `out` (default 0). */
  offset?: number;
  /**
   * Index in the stream of the first value drawn (a multiple of 4; default 0): a stream too large for one buffer is
   * drawn in chunks that together hold exactly what one fill would.
   */
  first?: number;
  seed: Seed;
  /** Counter word 1: one per sampling step (default 0). */
  stream?: number;
  /** Counter word 2: e.g. the sample or image index (default 0). */
  sub?: number;
  /**
   * Read the stream on the GPU: stream + table[slot] (wrapping), where `table` is a u32 storage buffer (e.g. the
   * sampler's step counter). Lets one recorded dispatch make fresh noise at every step without CPU writes.
   */
  streamTable?: { buffer: GPUBuffer; slot: number };
  label?: string;
}

/** A recorded fill: its dispatch, and setters that rewrite its uniform (taking effect at the next submit). */
export interface Fill {
  dispatch: Dispatch;
  setSeed(seed: Seed): void;
  setStream(stream: number): void;
  setSub(sub: number): void;
}

/** The generator's pipelines on one device (the raw-words and counter ones, for tests and tools, only when asked). */
export class GaussianRng {
  private constructor(
    private readonly ctx: GpuContext,
    private readonly plain: GPUComputePipeline,
    private readonly table: GPUComputePipeline,
  ) {}

  static async create(ctx: GpuContext): Promise<GaussianRng> {
    const [plain, table] = await Promise.all([
      ctx.pipeline(gaussianWgsl(false), { label: 'rng.gaussian' }),
      ctx.pipeline(gaussianWgsl(true), { label: 'rng.gaussian-table' }),
    ]);
    return new GaussianRng(ctx, plain, table);
  }

  /** Standard normal f32 values into out[offset .. offset+n). */
  fill(o: FillOptions): Fill {
    return this.record(o, o.streamTable ? this.table : this.plain, o.label ?? 'rng.gaussian');
  }

  /** The raw Philox u32 words (element i = word i % 4 of block i / 4) into a u32 buffer: for tests and tools. */
  async fillRaw(o: Omit<FillOptions, 'streamTable'>): Promise<Fill> {
    const raw = await this.ctx.pipeline(PHILOX_RAW_WGSL, { label: 'rng.philox-raw' });
    return this.record({ ...o, streamTable: undefined }, raw, o.label ?? 'rng.philox-raw');
  }

  /**
   * A dispatch adding `delta` (wrapping mod 2^32; pass 0xffffffff to count down) to table[slot]: record it after a
   * step's fill to advance a GPU-side step counter.
   */
  async advance(table: GPUBuffer, slot: number, delta = 1): Promise<Dispatch> {
    const add = await this.ctx.pipeline(COUNTER_ADD_WGSL, { label: 'rng.counter-add' });
    const q = this.ctx.uniform(
      COUNTER_ADD_UNIFORM.pack({ slot: u32(slot, 'slot'), delta: u32(delta, 'delta') }),
      'rng.advance',
    );
    return { pipeline: add, bindGroup: this.ctx.bind(add, [table, q]), workgroups: [1], label: 'rng.advance' };
  }

  private record(o: FillOptions, pipeline: GPUComputePipeline, label: string): Fill {
    const n = u32(o.n, 'n');
    if (n > 0xfffffffc) throw new Error(`rng: at most 2^32-4 values per fill, got ${n}`);
    const offset = u32(o.offset ?? 0, 'offset');
    const capacity = Math.floor(o.out.size / 4);
    if (offset + n > capacity) {
      throw new Error(
        `rng: writing ${n} values at ${offset} overruns ${o.out.label || 'the output'} (${capacity} values)`,
      );
    }
    const [seedLo, seedHi] = seedWords(o.seed);
    const first = u32(o.first ?? 0, 'first');
    if (first % 4) throw new Error(`rng: the first value drawn must be a multiple of 4 (a block), got ${first}`);
    // the fill's uniform, repacked whenever a setter changes a field
    const params = {
      n,
      offset,
      seedLo,
      seedHi,
      stream: u32(o.stream ?? 0, 'stream'),
      sub: u32(o.sub ?? 0, 'sub'),
      slot: o.streamTable ? u32(o.streamTable.slot, 'slot') : 0,
      base: first / 4,
    };
    const ubuf = this.ctx.uniform(RNG_UNIFORM.pack(params, label), `${label}.params`);
    const buffers = [o.out, ubuf];
    if (o.streamTable) buffers.push(o.streamTable.buffer);
    const dispatch: Dispatch = {
      pipeline,
      bindGroup: this.ctx.bind(pipeline, buffers, label),
      workgroups: rngWorkgroups(ceilDiv(Math.max(n, 1), 4)),
      label,
    };
    const write = () => this.ctx.device.queue.writeBuffer(ubuf, 0, RNG_UNIFORM.pack(params, label));
    return {
      dispatch,
      setSeed: (seed) => {
        [params.seedLo, params.seedHi] = seedWords(seed);
        write();
      },
      setStream: (stream) => {
        params.stream = u32(stream, 'stream');
        write();
      },
      setSub: (sub) => {
        params.sub = u32(sub, 'sub');
        write();
      },
    };
  }
}
