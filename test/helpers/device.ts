// One device per test file, opened lazily and released at the end so the runner exits.
import type { GpuContext } from '../../engine/gpu.ts';
import * as K from '../../engine/kernels.ts';
import { openDevice } from '../../engine/node/device.ts';

let ctx: Promise<GpuContext> | null = null;

export function device(): Promise<GpuContext> {
  ctx ??= openDevice();
  return ctx;
}

export async function releaseDevice(): Promise<void> {
  if (!ctx) return;
  const c = await ctx;
  ctx = null;
  c.destroy();
}

/**
 * Run `body` on a view of `ctx` with a mixed-precision or tensor-core conv kernel selected; where the device cannot
 * run that kernel, print why and skip (the refusal itself is tested in conv-variants.test.ts).
 */
export async function withConvKernel(
  ctx: GpuContext,
  kernel: 'f16' | 'mma' | 'mma3',
  body: (ctx: GpuContext) => Promise<void>,
): Promise<void> {
  const why =
    kernel !== 'f16' ? (await K.mmaSupport(ctx)).reason : ctx.features.shaderF16 ? undefined : 'no shader-f16';
  if (why) {
    if (kernel !== 'f16' && process.env.SR3_EXPECT_MMA === '1')
      throw new Error(`SR3_EXPECT_MMA=1 but the ${kernel} kernel cannot run: ${why}`);
    console.log(`    skipped: ${why}`);
    return;
  }
  await body(ctx.withOptions({ convKernel: kernel }));
}

/** Deterministic pseudo-random numbers in [-1, 1) for test data (mulberry32). */
export function rand(n: number, seed = 1): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

/** max |a-b| / max(1, max |b|): the golden files' relative error. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let m = 0;
  let s = 1;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
    s = Math.max(s, Math.abs(b[i]));
  }
  return m / s;
}
