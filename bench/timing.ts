// Timing for the benchmarks: GPU time from timestamp queries where the device has `timestamp-query`, otherwise wall
// time around submit + onSubmittedWorkDone. Each sample is one submission of `perSample` repetitions of the encoded
// work inside one compute pass; the figure is the median sample divided by `perSample`. Unless the caller fixes it,
// `perSample` grows until a sample lasts at least `minSampleMs` (Dawn may quantise timestamps, and a submission has a
// fixed cost), so microsecond kernels on a real GPU are timed over many back-to-back dispatches.
import type { GpuContext } from '../engine/gpu.ts';

export type TimerSource = 'timestamp' | 'wall';

export interface TimingOptions {
  /** samples taken (the median is reported) */
  reps: number;
  /** untimed submissions first (pipeline compilation, first-touch of buffers) */
  warmup: number;
  /** repetitions of the work per sample (default: calibrated so a sample lasts at least minSampleMs) */
  perSample?: number;
  /** shortest sample when perSample is calibrated (default 10 ms) */
  minSampleMs?: number;
  /** force wall-clock timing even when timestamp queries exist */
  wall?: boolean;
  /** ms of back-to-back untimed submissions just before the samples (default 200, 0 on a software device) */
  spinMs?: number;
}

export interface Timing {
  /** median ms for one repetition of the work */
  ms: number;
  /** repetitions of the work in each sample */
  perSample: number;
  min: number;
  max: number;
  samples: number;
  source: TimerSource;
}

export function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/**
 * Time `encode` (which records work into an open compute pass). Throws on any GPU error during the run.
 */
export async function timePass(
  ctx: GpuContext,
  encode: (pass: GPUComputePassEncoder) => void,
  opts: TimingOptions,
): Promise<Timing> {
  const dev = ctx.device;
  let perSample = Math.max(1, opts.perSample ?? 1);
  const useTs = ctx.features.timestampQuery && !opts.wall;
  let querySet: GPUQuerySet | null = null;
  let resolve: GPUBuffer | null = null;
  let readback: GPUBuffer | null = null;
  if (useTs) {
    querySet = dev.createQuerySet({ type: 'timestamp', count: 2 });
    resolve = dev.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    readback = dev.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }
  const submit = (timed: boolean) => {
    const enc = dev.createCommandEncoder({ label: 'bench' });
    const pass = enc.beginComputePass(
      timed && querySet
        ? { label: 'bench', timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } }
        : { label: 'bench' },
    );
    for (let i = 0; i < perSample; i++) encode(pass);
    pass.end();
    if (timed && querySet) {
      enc.resolveQuerySet(querySet, 0, 2, resolve!, 0);
      enc.copyBufferToBuffer(resolve!, 0, readback!, 0, 16);
    }
    dev.queue.submit([enc.finish()]);
  };
  try {
    for (let i = 0; i < opts.warmup; i++) {
      submit(false);
      await ctx.sync();
    }
    /** ms for one submission of perSample repetitions */
    const sample = async (): Promise<number> => {
      if (useTs) {
        submit(true);
        await readback!.mapAsync(GPUMapMode.READ);
        const t = new BigUint64Array(readback!.getMappedRange().slice(0));
        readback!.unmap();
        ctx.check();
        return Number(t[1] - t[0]) / 1e6;
      }
      const t0 = performance.now();
      submit(false);
      await ctx.sync();
      return performance.now() - t0;
    };
    let last = 0; // ms of the latest sample at the current perSample
    if (opts.perSample === undefined) {
      const target = opts.minSampleMs ?? 10;
      for (let i = 0; i < 6; i++) {
        last = await sample();
        if (last >= target || perSample >= 4096) break;
        const grow = Math.min(64, Math.ceil((1.2 * target) / Math.max(last, target / 64)));
        perSample = Math.min(4096, perSample * grow);
        last *= grow;
      }
    } else {
      last = await sample();
    }
    // Back-to-back submissions for about spinMs before the timed samples, so that the GPU's clocks are up: on an H100,
    // samples of one U-Net step each, with a read-back between them, gave timestamp medians 2-3x the wall time of
    // back-to-back steps (their minimum matched it), as if the GPU had dropped to a low clock between samples.
    // (none on a software device, which has no clocks to raise)
    const spins = Math.min(1000, Math.ceil((opts.spinMs ?? (ctx.adapter.isSoftware ? 0 : 200)) / Math.max(last, 0.01)));
    for (let i = 0; i < spins; i++) submit(false);
    await ctx.sync();
    const samples: number[] = [];
    for (let i = 0; i < Math.max(1, opts.reps); i++) samples.push((await sample()) / perSample);
    // A timestamp pair of zeros (a driver that accepts the feature but writes nothing) is no measurement: fall back.
    if (useTs && samples.every((s) => s <= 0)) return timePass(ctx, encode, { ...opts, warmup: 0, wall: true });
    return {
      ms: median(samples),
      perSample,
      min: Math.min(...samples),
      max: Math.max(...samples),
      samples: samples.length,
      source: useTs ? 'timestamp' : 'wall',
    };
  } finally {
    querySet?.destroy();
    resolve?.destroy();
    readback?.destroy();
  }
}

/**
 * Steps as an application runs them: each one encoded in its own command encoder and submitted, `n` in a row, the
 * wall clock from the first encode to the last completion divided by n (so CPU encoding and submission count, where
 * they do not overlap the GPU's work), and the CPU time to encode and finish one step's command buffer alone.
 */
export async function wallPerSubmission(
  ctx: GpuContext,
  encode: (pass: GPUComputePassEncoder) => void,
  n: number,
): Promise<{ ms: number; encode_ms: number; n: number }> {
  const dev = ctx.device;
  const record = () => {
    const enc = dev.createCommandEncoder({ label: 'bench-wall' });
    const pass = enc.beginComputePass({ label: 'bench-wall' });
    encode(pass);
    pass.end();
    return enc.finish();
  };
  await ctx.sync();
  const e0 = performance.now();
  const cbs = Array.from({ length: 5 }, record);
  const encodeMs = (performance.now() - e0) / cbs.length;
  dev.queue.submit(cbs);
  await ctx.sync();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) dev.queue.submit([record()]);
  await ctx.sync();
  ctx.check();
  return { ms: (performance.now() - t0) / n, encode_ms: encodeMs, n };
}
