// Upscaling an image with an SR3 model: the condition is the low-resolution image upscaled with the model's bicubic
// kernel, the sampler refines pure noise into the high-resolution image, optionally keeping the input's low
// frequencies (consistency). Images of any size are padded to what the U-Net needs and cropped back.
// Browser-safe core: tensors in, tensors out; files and PNG live at the Node edge.
import type { SR3Model } from '../weights-format/index.ts';
import type { Dispatch, GpuContext } from './gpu.ts';
import { GaussianRng, rngWorkgroups, type Fill, type Seed } from './rng.ts';
import { BICUBIC_TORCH, BICUBIC_TORCH_AA, Resampler, type CubicKernel } from './resample.ts';
import { Sampler, type SamplerKind } from './sampler.ts';
import { makeSchedule } from './schedule.ts';
import { UNet } from './unet.ts';
import { CONSISTENCY_WGSL } from '../shaders/diffusion.ts';

/** A float image, channels-first, values in [-1, 1]. */
export interface Tensor3 {
  channels: number;
  height: number;
  width: number;
  data: Float32Array;
}

export interface UpscaleOptions {
  /** Sampling schedule `kind:steps:start:end` (default: defaultSchedule(steps)). */
  schedule?: string;
  /** Number of steps when no schedule is given (default DEFAULT_STEPS). */
  steps?: number;
  sampler?: SamplerKind;
  eta?: number;
  seed?: Seed;
  /** Several samples of the same image (run as one batch). */
  samples?: number;
  /** Keep the input's low frequencies at every step (default true). */
  consistency?: boolean;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export const DEFAULT_STEPS = 20;

/** The inference schedule used when only a step count is given: linear betas from 1e-4 whose sum is about 10. */
export function defaultSchedule(steps: number): string {
  if (!Number.isInteger(steps) || steps < 2) throw new Error(`--steps must be an integer >= 2, got ${steps}`);
  const end = Math.min(0.5, 20 / steps);
  return `linear:${steps}:1e-4:${+end.toPrecision(4)}`;
}

/** How a model makes its condition: scale factor and kernels (from the model's metadata; defaults: the reference's). */
export function conditionRecipe(model: SR3Model): { scale: number; up: CubicKernel; down: CubicKernel; clamp: boolean } {
  const c = model.condition ?? {};
  const scale = c.scale ?? 4;
  const a = c.bicubic_a ?? -0.75;
  return {
    scale,
    up: { method: 'interp', a },
    down: BICUBIC_TORCH_AA,
    clamp: c.clamp ?? true,
  };
}

/** Padding each side so the U-Net and the consistency projection can run. */
export function paddedSize(model: SR3Model, h: number, w: number, scale: number): [number, number] {
  const f = 2 ** (model.config.channel_mults.length - 1);
  const m = lcm(f, scale);
  return [Math.ceil(h / m) * m, Math.ceil(w / m) * m];
}

function gcd(a: number, b: number): number {
  return b ? gcd(b, a % b) : a;
}
function lcm(a: number, b: number): number {
  return (a / gcd(a, b)) * b;
}

/** Edge-replicate padding of a CHW image to H x W (top-left anchored). */
export function padReplicate(img: Tensor3, H: number, W: number): Tensor3 {
  if (H === img.height && W === img.width) return img;
  const out = new Float32Array(img.channels * H * W);
  for (let c = 0; c < img.channels; c++)
    for (let y = 0; y < H; y++) {
      const sy = Math.min(y, img.height - 1);
      for (let x = 0; x < W; x++) out[(c * H + y) * W + x] = img.data[(c * img.height + sy) * img.width + Math.min(x, img.width - 1)];
    }
  return { channels: img.channels, height: H, width: W, data: out };
}

export function crop(img: Tensor3, h: number, w: number): Tensor3 {
  if (h === img.height && w === img.width) return img;
  const out = new Float32Array(img.channels * h * w);
  for (let c = 0; c < img.channels; c++)
    for (let y = 0; y < h; y++) out.set(img.data.subarray((c * img.height + y) * img.width, (c * img.height + y) * img.width + w), (c * h + y) * w);
  return { channels: img.channels, height: h, width: w, data: out };
}

/**
 * Upscale one low-resolution image (channels = the model's output channels, values in [-1, 1]).
 * Returns `samples` high-resolution images, scale x the input size.
 */
export async function upscaleTensor(ctx: GpuContext, model: SR3Model, lr: Tensor3, opts: UpscaleOptions = {}): Promise<Tensor3[]> {
  const cfg = model.config;
  const C = cfg.out_channel;
  if (lr.channels !== C) throw new Error(`this model makes ${C}-channel images; the input has ${lr.channels} channels`);
  if (cfg.in_channel - cfg.out_channel !== C) {
    throw new Error(`this model's condition has ${cfg.in_channel - cfg.out_channel} channels, not ${C}: it is not an image-conditioned SR3 model`);
  }
  if (lr.height < 1 || lr.width < 1) throw new Error(`the input image is empty (${lr.width}x${lr.height})`);
  const { scale, up, down, clamp } = conditionRecipe(model);
  const samples = opts.samples ?? 1;
  if (!Number.isInteger(samples) || samples < 1) throw new Error(`samples must be a positive integer, got ${samples}`);
  const spec = opts.schedule ?? defaultSchedule(opts.steps ?? DEFAULT_STEPS);
  const schedule = makeSchedule(spec);
  const consistency = opts.consistency ?? true;

  // Pad the LR image so that the HR size is a multiple of what the U-Net and the projection need.
  const [Hp, Wp] = paddedSize(model, lr.height * scale, lr.width * scale, scale);
  const lrP = padReplicate(lr, Hp / scale, Wp / scale);
  const hlr = Hp / scale;
  const wlr = Wp / scale;
  UNet.checkShape(cfg, samples, Hp, Wp);

  const rs = await Resampler.create(ctx);
  if (modelObjective(model) === 'regression') return regress(ctx, rs, model, lrP, { scale, up, clamp, samples, out: [lr.height * scale, lr.width * scale] });
  const n = samples * C * Hp * Wp;
  const lrBuf = ctx.buffer(samples * C * hlr * wlr * 4, 'upscale.lr');
  for (let s = 0; s < samples; s++) ctx.write(lrBuf, lrP.data, s * lrP.data.byteLength);

  let extra: { bufs: GPUBuffer[] } = { bufs: [] };
  const sampler = await Sampler.build(ctx, model, {
    batch: samples,
    height: Hp,
    width: Wp,
    sampler: { kind: opts.sampler ?? 'reference', schedule, eta: opts.eta },
    afterStep: consistency
      ? async (smp) => {
          const r = await consistencyDispatches(ctx, rs, smp, { C, Hp, Wp, scale, up, down, samples, n });
          extra = r;
          return r;
        }
      : undefined,
  });
  const cond = sampler.buffers.cond;
  try {
    // condition = bicubic upscale of the LR image (clamped as the model was trained)
    ctx.run([rs.upscale({ input: lrBuf, output: cond, batch: samples, channels: C, inH: hlr, inW: wlr, factor: scale, kernel: up, clamp, label: 'upscale.condition' })]);
    if (consistency) {
      // udc = U(D(cond)), once
      const [lrTmp, udc] = [extra.bufs[1], extra.bufs[3]];
      ctx.run([
        rs.downscale({ input: cond, output: lrTmp, batch: samples, channels: C, inH: Hp, inW: Wp, factor: scale, kernel: down, label: 'upscale.udc.down' }),
        rs.upscale({ input: lrTmp, output: udc, batch: samples, channels: C, inH: hlr, inW: wlr, factor: scale, kernel: up, label: 'upscale.udc.up' }),
      ]);
    }
    await sampler.run({ seed: opts.seed ?? 0, onProgress: opts.onProgress, signal: opts.signal });
    const y = await sampler.readY();
    const per = C * Hp * Wp;
    const out: Tensor3[] = [];
    for (let s = 0; s < samples; s++) {
      const full: Tensor3 = { channels: C, height: Hp, width: Wp, data: y.slice(s * per, (s + 1) * per) };
      out.push(crop(full, lr.height * scale, lr.width * scale));
    }
    return out;
  } finally {
    sampler.destroy();
    lrBuf.destroy();
    for (const b of extra.bufs) b.destroy();
  }
}

/** 'regression' for the paper's regression baseline (trained by `sr3 train --objective regression`), else 'diffusion'. */
export function modelObjective(model: SR3Model): 'diffusion' | 'regression' {
  try {
    return JSON.parse(model.metadata?.training ?? '{}').objective === 'regression' ? 'regression' : 'diffusion';
  } catch {
    return 'diffusion';
  }
}

/** The regression baseline: one U-Net pass on cat(condition, 0) at noise level 0 predicts the HR image. */
async function regress(
  ctx: GpuContext,
  rs: Resampler,
  model: SR3Model,
  lrP: Tensor3,
  o: { scale: number; up: CubicKernel; clamp: boolean; samples: number; out: [number, number] },
): Promise<Tensor3[]> {
  const C = lrP.channels;
  const [Hp, Wp] = [lrP.height * o.scale, lrP.width * o.scale];
  const net = await UNet.build(ctx, model, { batch: 1, height: Hp, width: Wp, splitInput: true });
  const lrBuf = ctx.upload(lrP.data, 'regress.lr');
  try {
    // y and the noise level are zero-initialised buffers
    ctx.run([rs.upscale({ input: lrBuf, output: net.cond!, batch: 1, channels: C, inH: lrP.height, inW: lrP.width, factor: o.scale, kernel: o.up, clamp: o.clamp })]);
    net.run();
    const y = await ctx.read(net.output, C * Hp * Wp * 4);
    const img = crop({ channels: C, height: Hp, width: Wp, data: y }, o.out[0], o.out[1]);
    return Array.from({ length: o.samples }, () => img);
  } finally {
    net.destroy();
    lrBuf.destroy();
  }
}

/** The consistency projection's dispatches, recorded once and replayed after every step. */
async function consistencyDispatches(
  ctx: GpuContext,
  rs: Resampler,
  smp: Sampler,
  o: { C: number; Hp: number; Wp: number; scale: number; up: CubicKernel; down: CubicKernel; samples: number; n: number },
): Promise<{ dispatches: Dispatch[]; fills: Fill[]; bufs: GPUBuffer[] }> {
  const { C, Hp, Wp, scale, samples, n } = o;
  const h = Hp / scale;
  const w = Wp / scale;
  const zb = ctx.buffer(n * 4, 'consistency.z');
  const lr = ctx.buffer(samples * C * h * w * 4, 'consistency.lr');
  const wb = ctx.buffer(n * 4, 'consistency.w');
  const udc = ctx.buffer(n * 4, 'consistency.udc');
  const ub = ctx.buffer(n * 4, 'consistency.u');
  const rng = await GaussianRng.create(ctx);
  const { y, table, counter } = smp.buffers;
  const prep = await ctx.pipeline(CONSISTENCY_WGSL, { entry: 'prep', label: 'consistency.prep' });
  const apply = await ctx.pipeline(CONSISTENCY_WGSL, { entry: 'apply', label: 'consistency.apply' });
  const u = ctx.uniform(new Uint32Array([n, 0, 0, 0]));
  const wg = rngWorkgroups(n);
  const fill = rng.fill({ out: zb, n, seed: 0, sub: 2, streamTable: { buffer: counter, slot: 0 }, label: 'consistency.z' });
  const dispatches: Dispatch[] = [
    fill.dispatch,
    { pipeline: prep, bindGroup: ctx.bind(prep, [table, counter, y, zb, wb, u]), workgroups: wg, label: 'consistency.prep' },
    rs.downscale({ input: wb, output: lr, batch: samples, channels: C, inH: Hp, inW: Wp, factor: scale, kernel: o.down, label: 'consistency.down' }),
    rs.upscale({ input: lr, output: ub, batch: samples, channels: C, inH: h, inW: w, factor: scale, kernel: o.up, label: 'consistency.up' }),
    { pipeline: apply, bindGroup: ctx.bind(apply, [table, counter, ub, udc, y, u]), workgroups: wg, label: 'consistency.apply' },
  ];
  return { dispatches, fills: [fill], bufs: [zb, lr, wb, udc, ub] };
}

/** Plain bicubic upscaling of a tensor on the GPU (for alpha channels, and the bicubic baseline). */
export async function bicubicUpscale(ctx: GpuContext, t: Tensor3, factor: number, kernel: CubicKernel = BICUBIC_TORCH, clamp = true): Promise<Tensor3> {
  const rs = await Resampler.create(ctx);
  const inp = ctx.upload(t.data, 'bicubic.in');
  const n = t.channels * t.height * factor * t.width * factor;
  const out = ctx.buffer(n * 4, 'bicubic.out');
  try {
    ctx.run([rs.upscale({ input: inp, output: out, batch: 1, channels: t.channels, inH: t.height, inW: t.width, factor, kernel, clamp })]);
    return { channels: t.channels, height: t.height * factor, width: t.width * factor, data: await ctx.read(out, n * 4) };
  } finally {
    inp.destroy();
    out.destroy();
  }
}
