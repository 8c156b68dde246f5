// What every op's host code shares (engine/ops/*.ts, engine/kernels*.ts): uniform checks, placeholder bindings,
// workgroup grids and their limits, shared scratch buffers, the backward recorders' argument checks.
import { ceilDiv, type GpuContext } from '../gpu.ts';

/** A small buffer bound where a kernel's optional input is absent. */
export function dummy(ctx: GpuContext): GPUBuffer {
  return ctx.memo('unused-binding', () => ctx.buffer(16, 'unused-binding'));
}

/** Uniform fields as u32, each checked to be one (the message names the kernel when a label is given). */
export function u32s(values: number[], label?: string): Uint32Array {
  for (const v of values) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
      throw new Error(`${label ?? 'kernel'}: parameter out of u32 range: ${v}`);
  }
  return new Uint32Array(values);
}

/**
 * Workgroups of `size` invocations covering n threads, folded into 2D past the per-dimension limit (the kernels index
 * wg.y * nw.x + wg.x).
 */
export function grid(ctx: GpuContext, n: number, size: number, label?: string): [number, number] {
  const groups = Math.max(1, ceilDiv(n, size));
  const x = Math.min(groups, ctx.limits.maxComputeWorkgroupsPerDimension);
  const wg: [number, number] = [x, ceilDiv(groups, x)];
  checkWorkgroups(ctx, wg, label);
  return wg;
}

/** Throw when a dispatch would exceed the device's workgroups per dimension. */
export function checkWorkgroups(ctx: GpuContext, wg: number[], label?: string): void {
  const max = ctx.limits.maxComputeWorkgroupsPerDimension;
  for (const n of wg) {
    if (n > max)
      throw new Error(
        `${label}: ${n} workgroups in one dimension, over this device's limit of ${max}; use a smaller image or batch`,
      );
  }
}

/** The shared scratch buffers of a context, by purpose. */
const scratches = (ctx: GpuContext) => ctx.memo('scratches', () => new Map<string, GPUBuffer>());
/** Bytes of the split-K scratch buffer this context holds now (0 before any split conv). */
export function splitKScratchBytes(ctx: GpuContext): number {
  return scratches(ctx).get('conv2d.splitk_partials')?.size ?? 0;
}
/** Bytes of every shared scratch buffer of this context (split-K, attention scores, GroupNorm partials, ...). */
export function scratchBytes(ctx: GpuContext): number {
  let n = 0;
  for (const b of scratches(ctx).values()) n += b.size;
  return n;
}
/**
 * One scratch buffer per context and purpose (split-K partial sums, the backward's flipped weights...), grown as
 * needed. Dispatches run in order, so every op can use it between the passes it returns together (one Dispatch[]); a
 * buffer replaced by a larger one stays alive for the bind groups that hold it.
 */
export function sharedScratch(ctx: GpuContext, name: string, bytes: number): GPUBuffer {
  const m = scratches(ctx);
  const cur = m.get(name);
  if (cur && cur.size >= bytes) return cur;
  const buf = ctx.buffer(Math.max(bytes, 1 << 16), name);
  m.set(name, buf);
  return buf;
}

export interface BackwardOptions {
  /** Add into the destination instead of overwriting it. */
  accumulate?: boolean;
}

/**
 * Distinct small buffers bound where an optional *writable* output is absent (a buffer may not be bound twice in one
 * dispatch when one binding is writable, so these never share the read-only dummy above).
 */
export function writeDummy(ctx: GpuContext, i = 0): GPUBuffer {
  const list = ctx.memo('unused-writable-bindings', (): GPUBuffer[] => []);
  while (list.length <= i) list.push(ctx.buffer(16, `unused-writable-binding-${list.length}`));
  return list[i];
}

/** Workgroups of 256 covering n threads (grid). */
export function grid256(ctx: GpuContext, n: number, label?: string): [number, number] {
  return grid(ctx, n, 256, label);
}

export function need(cond: unknown, msg: string): void {
  if (!cond) throw new Error(msg);
}

/**
 * A buffer written by a dispatch may not be bound anywhere else in it (WebGPU's writable-aliasing rule): check up
 * front, so the mistake reads as a message naming the bindings rather than a validation error later.
 */
export function noAlias(
  label: string,
  written: Record<string, GPUBuffer | undefined>,
  read: Record<string, GPUBuffer | undefined>,
): void {
  const w = Object.entries(written).filter(([, b]) => b);
  const all = [...w, ...Object.entries(read).filter(([, b]) => b)];
  for (const [wn, wb] of w) {
    for (const [n, b] of all) {
      if (n !== wn && b === wb)
        throw new Error(`${label}: ${wn} and ${n} must be different buffers (${wn} is written)`);
    }
  }
}
