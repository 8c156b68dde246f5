// Whole-network benchmarks: one U-Net forward (one denoising step) with random weights, and a full upscale (every
// step of a sampling schedule) through engine/sampler.ts. Random weights time the same as trained ones: no kernel
// branches on values.
import { encodeDispatch, type GpuContext } from '../engine/gpu.ts';
import { UNet, type UNetWeights } from '../engine/unet.ts';
import * as K from '../engine/kernels.ts';
import type { UNetConfig } from '../weights-format/config.ts';
import { expectedParamShapes } from '../weights-format/unet.ts';
import { timePass, wallPerSubmission, type Timing, type TimingOptions } from './timing.ts';

export interface UNetCase {
  kind: 'unet';
  name: string;
  /** the config's label (e.g. '16->128') */
  model: string;
  config: UNetConfig;
  batch: number;
  size: number;
}

export interface UNetResult {
  name: string;
  model: string;
  batch: number;
  size: number;
  ms_per_step: number;
  ms_per_image: number;
  /** wall clock per step with each step encoded and submitted on its own (wallPerSubmission), and its CPU encode */
  wall_ms_per_step: number;
  encode_ms: number;
  gflop: number;
  gflops: number;
  params: number;
  params_bytes: number;
  activation_bytes: number;
  activation_bytes_unshared: number;
  peak_bytes: number;
  splitk_scratch_bytes: number;
  build_ms: number;
  dispatches: number;
  timing: Timing;
  profile?: UNetProfile;
}

export function unetConfig(o: {
  inner: number;
  mults: number[];
  attnLevels: number[];
  resBlocks: number;
  groups: number;
  inCh?: number;
  outCh?: number;
}): UNetConfig {
  return {
    in_channel: o.inCh ?? 6,
    out_channel: o.outCh ?? 3,
    inner_channel: o.inner,
    channel_mults: o.mults,
    res_blocks: o.resBlocks,
    norm_groups: o.groups,
    dropout: 0,
    attn_levels: o.attnLevels,
  };
}

/** Random weights of the right shapes (scaled like PyTorch's default init, so activations stay finite). */
export function randomWeights(config: UNetConfig, seed = 1): UNetWeights & { count: number } {
  const shapes = expectedParamShapes(config);
  let s = seed >>> 0;
  let count = 0;
  for (const shape of shapes.values()) count += shape.reduce((a, b) => a * b, 1);
  return {
    config,
    count,
    param(name: string): Float32Array {
      const shape = shapes.get(name);
      if (!shape) throw new Error(`no parameter ${name}`);
      const n = shape.reduce((a, b) => a * b, 1);
      const fanIn = shape.length > 1 ? n / shape[0] : 1;
      const isNormWeight = shape.length === 1 && /norm|block\.0\.weight/.test(name) && name.endsWith('.weight');
      const scale = 1 / Math.sqrt(fanIn);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
        const r = ((s >>> 8) / 16777216) * 2 - 1;
        out[i] = isNormWeight ? 1 + 0.1 * r : r * scale;
      }
      return out;
    },
  };
}

/**
 * Multiply-add FLOPs of one forward (2 per multiply-add): every convolution, the attention products and the noise
 * MLP, following unet.py's layer order (the same walk as engine/unet.ts). GroupNorm, Swish and adds are left out.
 */
export function unetFlops(cfg: UNetConfig, B: number, H: number, W: number): number {
  let f = 0;
  const conv = (cin: number, cout: number, h: number, w: number, ks: number) => {
    f += 2 * B * cout * cin * ks * ks * h * w;
  };
  const inner = cfg.inner_channel;
  f += 2 * B * (inner * 4 * inner + 4 * inner * inner); // noise MLP
  let h = H;
  let w = W;
  const resBlock = (cin: number, cout: number, withAttn: boolean) => {
    f += 2 * B * inner * cout; // noise_func
    conv(cin, cout, h, w, 3);
    if (cin !== cout) conv(cin, cout, h, w, 1);
    conv(cout, cout, h, w, 3);
    if (withAttn) {
      conv(cout, 3 * cout, h, w, 1);
      f += 4 * B * (h * w) * (h * w) * cout;
      conv(cout, cout, h, w, 1);
    }
  };
  conv(cfg.in_channel, inner, h, w, 3);
  const feats: number[] = [inner];
  let ch = inner;
  const mults = cfg.channel_mults;
  for (let lvl = 0; lvl < mults.length; lvl++) {
    const co = inner * mults[lvl];
    for (let r = 0; r < cfg.res_blocks; r++) {
      resBlock(ch, co, cfg.attn_levels.includes(lvl));
      ch = co;
      feats.push(ch);
    }
    if (lvl !== mults.length - 1) {
      h /= 2;
      w /= 2;
      conv(ch, ch, h, w, 3);
      feats.push(ch);
    }
  }
  resBlock(ch, ch, true);
  resBlock(ch, ch, false);
  for (let lvl = mults.length - 1; lvl >= 0; lvl--) {
    const co = inner * mults[lvl];
    for (let r = 0; r < cfg.res_blocks + 1; r++) {
      resBlock(ch + feats.pop()!, co, cfg.attn_levels.includes(lvl));
      ch = co;
    }
    if (lvl !== 0) {
      h *= 2;
      w *= 2;
      conv(ch, ch, h, w, 3);
    }
  }
  conv(ch, cfg.out_channel, h, w, 3);
  return f;
}

export async function benchUNet(
  ctx: GpuContext,
  c: UNetCase,
  t: TimingOptions & { profile?: boolean },
): Promise<UNetResult> {
  const weights = randomWeights(c.config);
  const t0 = performance.now();
  const net = await UNet.build(ctx, weights, { batch: c.batch, height: c.size, width: c.size, label: c.name });
  try {
    const nIn = c.batch * c.config.in_channel * c.size * c.size;
    const x = new Float32Array(nIn);
    for (let i = 0; i < nIn; i++) x[i] = Math.sin(i * 0.37);
    if (!net.input) throw new Error('U-Net built without an input buffer');
    ctx.write(net.input, x);
    ctx.write(net.noiseLevel, new Float32Array(c.batch).fill(0.5));
    // first run compiles the pipelines (lavapipe compiles lazily): counted in build_ms, not in the timing
    net.run();
    await ctx.sync();
    const buildMs = performance.now() - t0;
    const timing = await timePass(ctx, (p) => net.encode(p), { ...t, warmup: Math.max(0, t.warmup - 1) });
    // about half a second of steps, 3 to 100 of them
    const wall = await wallPerSubmission(
      ctx,
      (p) => net.encode(p),
      Math.max(3, Math.min(100, Math.ceil(500 / timing.ms))),
    );
    const profile = t.profile ? await profileDispatches(ctx, net, timing.ms) : undefined;
    const gflop = unetFlops(c.config, c.batch, c.size, c.size) / 1e9;
    const m = net.memory;
    return {
      name: c.name,
      model: c.model,
      batch: c.batch,
      size: c.size,
      ms_per_step: timing.ms,
      ms_per_image: timing.ms / c.batch,
      wall_ms_per_step: wall.ms,
      encode_ms: wall.encode_ms,
      gflop,
      gflops: gflop / (timing.ms / 1e3),
      params: weights.count,
      params_bytes: m.params,
      activation_bytes: m.activations,
      activation_bytes_unshared: m.unshared,
      // the split-K partial sums live in one scratch buffer per context, shared by every conv
      splitk_scratch_bytes: K.splitKScratchBytes(ctx),
      // every shared scratch (split-K partials, attention scores, GroupNorm partials), one of each per context
      peak_bytes: m.params + m.activations + K.scratchBytes(ctx),
      build_ms: buildMs,
      dispatches: net.dispatches.length,
      timing,
      profile,
    };
  } finally {
    net.destroy();
  }
}

/** Where one forward's time goes: every dispatch (a split-K reduction is one of its own) timed alone, summed by pipeline. */
export interface UNetProfile {
  /** the forward as one pass, and the sum of its dispatches timed one by one (the difference: overlap, gaps) */
  step_ms: number;
  sum_alone_ms: number;
  by_pipeline: { pipeline: string; ms: number; count: number; share: number }[];
  top: { label: string; pipeline: string; ms: number; workgroups: number[] }[];
}

async function profileDispatches(ctx: GpuContext, net: UNet, stepMs: number): Promise<UNetProfile> {
  const rows: { label: string; pipeline: string; ms: number; workgroups: number[] }[] = [];
  for (const d of net.dispatches) {
    const tm = await timePass(ctx, (p) => encodeDispatch(p, d), { reps: 3, warmup: 1, minSampleMs: 2, spinMs: 20 });
    rows.push({
      label: d.label ?? '',
      pipeline: d.pipeline.label || '?',
      ms: tm.ms,
      workgroups: d.workgroups.map((w) => w ?? 1),
    });
  }
  const sum = rows.reduce((a, r) => a + r.ms, 0);
  const by = new Map<string, { ms: number; count: number }>();
  for (const r of rows) {
    const e = by.get(r.pipeline) ?? { ms: 0, count: 0 };
    e.ms += r.ms;
    e.count++;
    by.set(r.pipeline, e);
  }
  return {
    step_ms: stepMs,
    sum_alone_ms: sum,
    by_pipeline: [...by].map(([pipeline, e]) => ({ pipeline, ...e, share: e.ms / sum })).sort((a, b) => b.ms - a.ms),
    top: rows.sort((a, b) => b.ms - a.ms).slice(0, 15),
  };
}

export interface UpscaleCase {
  kind: 'upscale';
  name: string;
  model: string;
  config: UNetConfig;
  batch: number;
  size: number;
  /** the sampling schedule, kind:steps:start:end */
  schedule: string;
}

export interface UpscaleResult {
  name: string;
  model: string;
  batch: number;
  size: number;
  steps: number;
  ms: number;
  ms_per_step: number;
  images_per_s: number;
  build_ms: number;
}

/**
 * A full upscale: every step of the schedule through the sampler (U-Net, noise, update; several steps per submission
 * as the sampler chooses), condition image random. Returns null with a reason when engine/sampler.ts is missing.
 */
export async function benchUpscale(
  ctx: GpuContext,
  c: UpscaleCase,
  reps: number,
): Promise<UpscaleResult | { skipped: string }> {
  let mod: typeof import('../engine/sampler.ts');
  let sched: typeof import('../engine/schedule.ts');
  try {
    mod = await import('../engine/sampler.ts');
    sched = await import('../engine/schedule.ts');
  } catch (e) {
    return { skipped: `no sampler module (engine/sampler.ts): ${(e as Error).message}` };
  }
  const schedule = sched.scheduleTables(sched.betaSchedule(sched.parseSchedule(c.schedule)));
  const t0 = performance.now();
  const s = await mod.Sampler.build(ctx, randomWeights(c.config), {
    batch: c.batch,
    height: c.size,
    width: c.size,
    sampler: { kind: 'reference', schedule },
  });
  try {
    const nCond = c.batch * (c.config.in_channel - c.config.out_channel) * c.size * c.size;
    const cond = new Float32Array(nCond);
    for (let i = 0; i < nCond; i++) cond[i] = Math.sin(i * 0.11);
    s.setCondition(cond);
    // one untimed run compiles everything
    await s.run({ seed: 1 });
    const buildMs = performance.now() - t0;
    const times: number[] = [];
    for (let r = 0; r < Math.max(1, reps); r++) {
      const t1 = performance.now();
      await s.run({ seed: 2 + r });
      await ctx.sync();
      times.push(performance.now() - t1);
    }
    times.sort((a, b) => a - b);
    const ms = times[(times.length - 1) >> 1];
    return {
      name: c.name,
      model: c.model,
      batch: c.batch,
      size: c.size,
      steps: s.steps,
      ms,
      ms_per_step: ms / s.steps,
      images_per_s: c.batch / (ms / 1e3),
      build_ms: buildMs,
    };
  } finally {
    s.destroy();
  }
}
