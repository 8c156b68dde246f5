// Upscaling an image with an SR3 model: the condition is the low-resolution image upscaled with the model's bicubic
// kernel, the sampler refines pure noise into the high-resolution image, optionally keeping the input's low
// frequencies (consistency). Images of any size are padded to what the U-Net needs and cropped back.
// Browser-safe core: tensors in, tensors out; files and PNG live at the Node edge.
import type { SR3Model } from '../weights-format/index.ts';
import { encodeDispatch, releaseDispatches, type Dispatch, type GpuContext } from './gpu.ts';
import { GaussianRng, type Fill, type Seed } from './rng.ts';
import { BICUBIC_TORCH, BICUBIC_TORCH_AA, Resampler, type CubicKernel } from './resample.ts';
import { MULTISTEP, Sampler, type SamplerKind } from './sampler.ts';
import { MAX_STEPS, makeSchedule } from './schedule.ts';
import { normScratchBytes, UNet } from './unet.ts';
import { planFlops, planMemory, planUNet } from './unet-plan.ts';
import { consistencyPasses } from './ops/diffusion.ts';
import { TileKernels } from './ops/tiles.ts';
import { acquire, type UpscaleCache } from './upscale-cache.ts';

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
  /**
   * A tiled image's progress within the steps: `done` of `total` (tiles x steps) tile passes finished. A step of a
   * big image on a slow device takes minutes; this shows it moving.
   */
  onTile?: (done: number, total: number) => void;
  /**
   * Before the first step: `done` of `total` shaders compiled (the first call has done = 0, the last done = total).
   * On a software device the first use of each shader compiles it, seconds each; this is that time, made visible.
   */
  onPrepare?: (done: number, total: number) => void;
  signal?: AbortSignal;
  /**
   * Work on overlapping tiles of at most tile x tile output pixels, sampled jointly (seamless). Default (tileFor): the
   * whole image in one pass when it fits the device and tiles would not save most of the work, else the largest tile
   * that fits and keeps the model's attention within a quarter of the convolutions' work.
   */
  tile?: number;
  /** Overlap between neighbouring tiles in output pixels (default a quarter of the tile). */
  overlap?: number;
  /**
   * Keep the model's parameters and the built samplers on the device for the next image (an upscaler's cache,
   * engine/upscaler.ts); without one, everything built is destroyed before this call returns.
   */
  cache?: UpscaleCache;
}

export const DEFAULT_STEPS = 6;
export const DEFAULT_SAMPLER: SamplerKind = 'reference';

/**
 * The inference schedule used when only a step count is given (steps = model evaluations). The ancestral samplers
 * (reference, paper, ddim): linear betas from 1e-4 to end = 20/steps, at most 0.5, and below 8 steps at least
 * 4/steps (at most 0.9), so that the betas still sum to about 2 (the start's sqrt(gamma) 0.24-0.29, as at 8 steps):
 * with 0.5, 6 steps started from less noise and lost 0.27 dB on the quick start's image; with 4/6 they match 8 and
 * 20 steps (bench/README.md, "Few-step solvers"). The ODE solvers: Karras spacing from sigma 100 to 0.01
 * (schedule.ts), which did better than log-SNR uniform in bench/README.md's table.
 */
export function defaultSchedule(steps: number, sampler: SamplerKind = DEFAULT_SAMPLER): string {
  if (!Number.isInteger(steps) || steps < 2 || steps > MAX_STEPS)
    throw new Error(`steps must be an integer from 2 to ${MAX_STEPS}, got ${steps}`);
  if (MULTISTEP[sampler]) return `karras:${steps}`;
  const end = Math.max(Math.min(0.5, 20 / steps), Math.min(0.9, 4 / steps));
  return `linear:${steps}:1e-4:${+end.toPrecision(4)}`;
}

/** How a model makes its condition: scale factor and kernels (from the model's metadata; defaults: the reference's). */
export function conditionRecipe(model: SR3Model): {
  scale: number;
  up: CubicKernel;
  down: CubicKernel;
  clamp: boolean;
} {
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
      for (let x = 0; x < W; x++)
        out[(c * H + y) * W + x] = img.data[(c * img.height + sy) * img.width + Math.min(x, img.width - 1)];
    }
  return { channels: img.channels, height: H, width: W, data: out };
}

export function crop(img: Tensor3, h: number, w: number): Tensor3 {
  if (h === img.height && w === img.width) return img;
  const out = new Float32Array(img.channels * h * w);
  for (let c = 0; c < img.channels; c++)
    for (let y = 0; y < h; y++)
      out.set(
        img.data.subarray((c * img.height + y) * img.width, (c * img.height + y) * img.width + w),
        (c * h + y) * w,
      );
  return { channels: img.channels, height: h, width: w, data: out };
}

/** What the HR size must be a multiple of: the U-Net's downsampling factor and the scale (for the projection). */
export function modelMultiple(model: SR3Model): number {
  return lcm(2 ** (model.config.channel_mults.length - 1), conditionRecipe(model).scale);
}

/**
 * Upscale one low-resolution image (channels = the model's output channels, values in [-1, 1]).
 * Returns `samples` high-resolution images, scale x the input size. A result holding NaN or infinity (a model or
 * setting that diverges) is an error, never an image.
 */
export async function upscaleTensor(
  ctx: GpuContext,
  model: SR3Model,
  lr: Tensor3,
  opts: UpscaleOptions = {},
): Promise<Tensor3[]> {
  if (opts.eta !== undefined && !(Number.isFinite(opts.eta) && opts.eta >= 0 && opts.eta <= 1)) {
    throw new Error(`eta must be a number from 0 (deterministic) to 1 (DDPM-like), got ${opts.eta}`);
  }
  const out = await sampleTensor(ctx, model, lr, opts);
  for (let s = 0; s < out.length; s++) {
    const d = out[s].data;
    let bad = 0;
    for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) bad++;
    if (bad) {
      throw new Error(
        `the sampled image${out.length > 1 ? ` (sample ${s})` : ''} holds ${bad} non-finite values of ${d.length}: the sampling diverged ` +
          `(check the model, eta and the schedule)`,
      );
    }
  }
  return out;
}

async function sampleTensor(ctx: GpuContext, model: SR3Model, lr: Tensor3, opts: UpscaleOptions): Promise<Tensor3[]> {
  const cfg = model.config;
  const C = cfg.out_channel;
  if (lr.channels !== C) throw new Error(`this model makes ${C}-channel images; the input has ${lr.channels} channels`);
  if (cfg.in_channel - cfg.out_channel !== C) {
    throw new Error(
      `this model's condition has ${cfg.in_channel - cfg.out_channel} channels, not ${C}: it is not an image-conditioned SR3 model`,
    );
  }
  if (lr.height < 1 || lr.width < 1) throw new Error(`the input image is empty (${lr.width}x${lr.height})`);
  const { scale, up, down, clamp } = conditionRecipe(model);
  const samples = opts.samples ?? 1;
  if (!Number.isInteger(samples) || samples < 1) throw new Error(`samples must be a positive integer, got ${samples}`);
  const spec = opts.schedule ?? defaultSchedule(opts.steps ?? DEFAULT_STEPS, opts.sampler ?? DEFAULT_SAMPLER);
  const schedule = makeSchedule(spec);
  const consistency = opts.consistency ?? true;

  // Pad the LR image so that the HR size is a multiple of what the U-Net and the projection need.
  const [Hp, Wp] = paddedSize(model, lr.height * scale, lr.width * scale, scale);
  const lrP = padReplicate(lr, Hp / scale, Wp / scale);
  const hlr = Hp / scale;
  const wlr = Wp / scale;
  UNet.checkShape(cfg, samples, Hp, Wp);

  const rs = await Resampler.create(ctx);
  const m = modelMultiple(model);
  const tile = opts.tile ?? tileFor(ctx, model, samples, Hp, Wp, m);
  if (opts.tile !== undefined && tile >= m) {
    // a given tile is checked against the device now, not by the first buffer that does not fit
    const t = Math.floor(tile / m) * m;
    if (!unetFits(ctx, model, samples, Math.min(t, Hp), Math.min(t, Wp))) {
      throw new Error(
        `tile ${tile}: a ${Math.min(t, Hp)}x${Math.min(t, Wp)} tile of this model does not fit this device; ` +
          `the largest that does here is ${fitTile(ctx, model, samples, Hp, Wp, m)} (or leave the tile out: it is chosen for the device)`,
      );
    }
  }
  if (tile < Math.max(Hp, Wp)) {
    return upscaleTiled(ctx, rs, model, lrP, {
      ...opts,
      samples,
      schedule: spec,
      consistency,
      scale,
      up,
      down,
      clamp,
      m,
      tile,
      out: [lr.height * scale, lr.width * scale],
    });
  }
  if (modelObjective(model) === 'regression')
    return regress(ctx, rs, model, lrP, {
      scale,
      up,
      clamp,
      samples,
      out: [lr.height * scale, lr.width * scale],
      cache: opts.cache,
    });
  const n = samples * C * Hp * Wp;
  // The sampler, its input buffer and the projection's buffers depend on the shape and the sampling settings only:
  // an upscaler's cache keeps them for the next image of the same size.
  const key = `full:${samples}:${Hp}x${Wp}:${opts.sampler ?? DEFAULT_SAMPLER}:${spec}:${opts.eta ?? 0}:${consistency}`;
  const { value: st, release } = await acquire(opts.cache, key, async () => {
    const lrBuf = ctx.buffer(samples * C * hlr * wlr * 4, 'upscale.lr');
    let extra: GPUBuffer[] = [];
    try {
      const sampler = await Sampler.build(ctx, model, {
        batch: samples,
        height: Hp,
        width: Wp,
        sampler: { kind: opts.sampler ?? DEFAULT_SAMPLER, schedule, eta: opts.eta },
        params: opts.cache?.params(),
        afterStep: consistency
          ? async (smp) => {
              const r = await consistencyDispatches(ctx, rs, smp, { C, Hp, Wp, scale, up, down, samples, n });
              extra = r.bufs;
              return r;
            }
          : undefined,
      });
      return {
        sampler,
        lrBuf,
        extra,
        destroy: () => {
          sampler.destroy();
          lrBuf.destroy();
          for (const b of extra) b.destroy();
        },
      };
    } catch (e) {
      lrBuf.destroy();
      for (const b of extra) b.destroy();
      throw e;
    }
  });
  const { sampler, lrBuf, extra } = st;
  for (let s = 0; s < samples; s++) ctx.write(lrBuf, lrP.data, s * lrP.data.byteLength);
  const cond = sampler.buffers.cond;
  const residual = modelTarget(model) === 'residual';
  // this image's own dispatches (not the sampler's, which a cache keeps): their uniforms are released at the end
  const once: Dispatch[] = [];
  const now = (d: Dispatch[]) => {
    once.push(...d);
    ctx.run(d);
  };
  try {
    // condition = bicubic upscale of the LR image (clamped as the model was trained)
    const condition = rs.upscale({
      input: lrBuf,
      output: cond,
      batch: samples,
      channels: C,
      inH: hlr,
      inW: wlr,
      factor: scale,
      kernel: up,
      clamp,
      label: 'upscale.condition',
    });
    await ctx.warmUp([condition, ...sampler.dispatches], opts.onPrepare);
    now([condition]);
    if (consistency && !residual) {
      // udc = U(D(cond)), once (with the residual target it stays zero: the residual has no low frequencies)
      const [lrTmp, udc] = [extra[0], extra[2]];
      now([
        rs.downscale({
          input: cond,
          output: lrTmp,
          batch: samples,
          channels: C,
          inH: Hp,
          inW: Wp,
          factor: scale,
          kernel: down,
          label: 'upscale.udc.down',
        }),
        rs.upscale({
          input: lrTmp,
          output: udc,
          batch: samples,
          channels: C,
          inH: hlr,
          inW: wlr,
          factor: scale,
          kernel: up,
          label: 'upscale.udc.up',
        }),
      ]);
    }
    await sampler.run({ seed: opts.seed ?? 0, onProgress: opts.onProgress, signal: opts.signal });
    const y = await sampler.readY();
    if (residual) addInPlace(y, await ctx.read(cond, n * 4));
    const per = C * Hp * Wp;
    const out: Tensor3[] = [];
    for (let s = 0; s < samples; s++) {
      const full: Tensor3 = { channels: C, height: Hp, width: Wp, data: y.slice(s * per, (s + 1) * per) };
      out.push(crop(full, lr.height * scale, lr.width * scale));
    }
    return out;
  } finally {
    releaseDispatches(once);
    release();
  }
}

/**
 * What the model's y is: 'hr' (the reference: the image itself) or 'residual' (HR minus the bicubic condition, as
 * SRDiff; `sr3 train --target residual` records it in the metadata's training entry). With the residual target every
 * sampler runs unchanged on the residual, the consistency projection pulls the residual's low frequencies to zero
 * (the image's then equal the condition's, as the plain target's projection makes them), and the condition is added
 * back at the end.
 */
export function modelTarget(model: SR3Model): 'hr' | 'residual' {
  let t: unknown;
  try {
    t = JSON.parse(model.metadata?.training ?? '{}').target;
  } catch {
    return 'hr';
  }
  if (t === undefined || t === 'hr') return 'hr';
  if (t === 'residual') return 'residual';
  throw new Error(`this model's metadata names an unknown target '${String(t)}' (this version knows hr and residual)`);
}

/** y += cond, element by element (the residual target's last step; y is a copy read back from the GPU). */
function addInPlace(y: Float32Array, cond: Float32Array): Float32Array {
  for (let i = 0; i < y.length; i++) y[i] += cond[i];
  return y;
}

/** 'regression' for the paper's regression baseline (trained by `sr3 train --objective regression`), else 'diffusion'. */
export function modelObjective(model: SR3Model): 'diffusion' | 'regression' {
  try {
    return JSON.parse(model.metadata?.training ?? '{}').objective === 'regression' ? 'regression' : 'diffusion';
  } catch {
    return 'diffusion';
  }
}

/**
 * The regression baseline's U-Net for batch x height x width (the whole image or a tile): its input split so the
 * condition is written alone (the noisy half stays zero), its parameters the cache's where there is one.
 */
function regressionNet(
  ctx: GpuContext,
  model: SR3Model,
  batch: number,
  height: number,
  width: number,
  cache: UpscaleCache | undefined,
): Promise<UNet> {
  return UNet.build(ctx, model, { batch, height, width, splitInput: true, params: cache?.params() });
}

/** The regression baseline: one U-Net pass on cat(condition, 0) at noise level 0 predicts the HR image. */
async function regress(
  ctx: GpuContext,
  rs: Resampler,
  model: SR3Model,
  lrP: Tensor3,
  o: { scale: number; up: CubicKernel; clamp: boolean; samples: number; out: [number, number]; cache?: UpscaleCache },
): Promise<Tensor3[]> {
  const C = lrP.channels;
  const [Hp, Wp] = [lrP.height * o.scale, lrP.width * o.scale];
  const net = await regressionNet(ctx, model, 1, Hp, Wp, o.cache);
  const lrBuf = ctx.upload(lrP.data, 'regress.lr');
  try {
    // y and the noise level are zero-initialised buffers
    const condition = rs.upscale({
      input: lrBuf,
      output: net.cond!,
      batch: 1,
      channels: C,
      inH: lrP.height,
      inW: lrP.width,
      factor: o.scale,
      kernel: o.up,
      clamp: o.clamp,
    });
    ctx.run([condition]);
    releaseDispatches([condition]);
    net.run();
    const y = await ctx.read(net.output, C * Hp * Wp * 4);
    if (modelTarget(model) === 'residual') addInPlace(y, await ctx.read(net.cond!, C * Hp * Wp * 4));
    const img = crop({ channels: C, height: Hp, width: Wp, data: y }, o.out[0], o.out[1]);
    return Array.from({ length: o.samples }, () => img);
  } finally {
    net.destroy();
    lrBuf.destroy();
  }
}

/**
 * The consistency projection's dispatches, recorded once and replayed after every step (CONSISTENCY_WGSL):
 * y <- y - U(D(y - sqrt(1 - g) z')) + sqrt(g) U(D(c)), z' fresh noise each step (ILVR's noised condition), for every
 * sampler. (Projecting a deterministic solver's y with its own eps as z' instead fixed the multistep solvers' noise on
 * the quick start's 128x128 image but made them far worse on 64x64 crops: bench/README.md, "Few-step solvers".)
 * Returns the buffers [lr, w, udc, u, z']: the callers make udc = U(D(c)) once per image.
 */
async function consistencyDispatches(
  ctx: GpuContext,
  rs: Resampler,
  smp: Sampler,
  o: {
    C: number;
    Hp: number;
    Wp: number;
    scale: number;
    up: CubicKernel;
    down: CubicKernel;
    samples: number;
    n: number;
  },
): Promise<{ dispatches: Dispatch[]; fills: Fill[]; bufs: GPUBuffer[] }> {
  const { C, Hp, Wp, scale, samples, n } = o;
  const h = Hp / scale;
  const w = Wp / scale;
  const lr = ctx.buffer(samples * C * h * w * 4, 'consistency.lr');
  const wb = ctx.buffer(n * 4, 'consistency.w');
  const udc = ctx.buffer(n * 4, 'consistency.udc');
  const ub = ctx.buffer(n * 4, 'consistency.u');
  const bufs = [lr, wb, udc, ub];
  const { y, table, counter } = smp.buffers;
  const dispatches: Dispatch[] = [];
  const fills: Fill[] = [];
  const z = ctx.buffer(n * 4, 'consistency.z');
  bufs.push(z);
  const { prep, apply } = await consistencyPasses(ctx, { n }, { table, counter, y, z, w: wb, u: ub, udc });
  const rng = await GaussianRng.create(ctx);
  const fill = rng.fill({
    out: z,
    n,
    seed: 0,
    sub: 2,
    streamTable: { buffer: counter, slot: 0 },
    label: 'consistency.z',
  });
  fills.push(fill);
  dispatches.push(fill.dispatch);
  dispatches.push(
    prep,
    rs.downscale({
      input: wb,
      output: lr,
      batch: samples,
      channels: C,
      inH: Hp,
      inW: Wp,
      factor: scale,
      kernel: o.down,
      label: 'consistency.down',
    }),
    rs.upscale({
      input: lr,
      output: ub,
      batch: samples,
      channels: C,
      inH: h,
      inW: w,
      factor: scale,
      kernel: o.up,
      label: 'consistency.up',
    }),
    apply,
  );
  return { dispatches, fills, bufs };
}

/** Plain bicubic upscaling of a tensor on the GPU (for alpha channels, and the bicubic baseline). */
export async function bicubicUpscale(
  ctx: GpuContext,
  t: Tensor3,
  factor: number,
  kernel: CubicKernel = BICUBIC_TORCH,
  clamp = true,
): Promise<Tensor3> {
  const rs = await Resampler.create(ctx);
  const inp = ctx.upload(t.data, 'bicubic.in');
  const n = t.channels * t.height * factor * t.width * factor;
  const out = ctx.buffer(n * 4, 'bicubic.out');
  try {
    const d = rs.upscale({
      input: inp,
      output: out,
      batch: 1,
      channels: t.channels,
      inH: t.height,
      inW: t.width,
      factor,
      kernel,
      clamp,
    });
    ctx.run([d]);
    releaseDispatches([d]);
    return {
      channels: t.channels,
      height: t.height * factor,
      width: t.width * factor,
      data: await ctx.read(out, n * 4),
    };
  } finally {
    inp.destroy();
    out.destroy();
  }
}

/**
 * How much of a tile's work attention may take before tiles are made smaller. Attention grows with the square of a
 * tile's area and the convolutions with its area, so past this share a smaller tile does less work per pixel even
 * with the extra overlap; below it, a bigger tile does about as much and gives the model more context.
 */
const ATTENTION_SHARE = 0.25;

/**
 * The tile side (a multiple of m) to upscale an H x W output with: the whole image when it fits the device and
 * tiling would not save most of its work, else the largest tile that fits the device (every tensor and the GroupNorm
 * scratch within maxStorageBufferBindingSize, the activations within a budget: unetFits) and keeps attention within
 * ATTENTION_SHARE of the tile's work (planFlops). A model with attention at a fine level (the golden tiny one attends
 * at a quarter of the resolution) thus works on tiles of 120 pixels, where an 836-pixel tile does 10 times the work
 * per pixel. (The canvas need not fit: upscaleTiled keeps one larger than a binding on the host.)
 */
export function tileFor(ctx: GpuContext, model: SR3Model, batch: number, H: number, W: number, m: number): number {
  const flops = (t: number) => planFlops(planUNet(model.config, batch, Math.min(t, H), Math.min(t, W), true));
  const whole = Math.max(H, W);
  const fit = fitTile(ctx, model, batch, H, W, m);
  // fitTile answers the whole image exactly when it fits (a smaller side otherwise)
  const wholeFits = fit >= whole;
  const fitK = Math.ceil(fit / m);
  // within that, the largest side whose attention stays within its share (the share grows with the side)
  const cheap = (k: number) => {
    const f = flops(k * m);
    return f.attention <= ATTENTION_SHARE * f.conv;
  };
  if (cheap(fitK)) return wholeFits ? whole : fitK * m;
  const t = largestK(1, fitK, cheap) * m;
  if (!wholeFits) return t;
  // the whole image fits: tile it only where that saves more than half the work (tiles change the result a little,
  // and each costs its own passes)
  const work = (side: number) => {
    const [th, tw] = [Math.min(side, H), Math.min(side, W)];
    const ov = defaultOverlap(th, tw, m);
    const f = flops(side);
    return tileOrigins(H, th, ov, m).length * tileOrigins(W, tw, ov, m).length * (f.conv + f.attention);
  };
  return work(t) < 0.5 * work(whole) ? t : whole;
}

/** The largest tile side (a multiple of m, up to 1024 unless the whole image fits) whose U-Net fits the device. */
export function fitTile(ctx: GpuContext, model: SR3Model, batch: number, H: number, W: number, m: number): number {
  const fits = (h: number, w: number) => unetFits(ctx, model, batch, h, w);
  if (fits(H, W)) return Math.max(H, W);
  // fitting is monotone in the side: a binary search
  const fitsSide = (k: number) => fits(Math.min(k * m, H), Math.min(k * m, W));
  if (!fitsSide(1)) {
    throw new Error(
      `even a ${m}x${m} tile of this model does not fit this device (maxStorageBufferBindingSize ${ctx.limits.maxStorageBufferBindingSize})`,
    );
  }
  return largestK(1, Math.max(1, Math.floor(Math.min(Math.max(H, W), 1024) / m)), fitsSide) * m;
}

/** The largest k in [lo, hi] with ok(k), for ok true at lo and monotone (true up to some k, false after). */
function largestK(lo: number, hi: number, ok: (k: number) => boolean): number {
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (ok(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** The overlap between tiles when none is given: a quarter of the tile, a multiple of m, at least m. */
export function defaultOverlap(th: number, tw: number, m: number): number {
  return Math.max(m, Math.round(Math.floor(Math.min(th, tw) / 4) / m) * m);
}

/** Whether the U-Net on a batch x h x w input fits the device (see tileFor). */
export function unetFits(ctx: GpuContext, model: SR3Model, batch: number, h: number, w: number): boolean {
  const budget = ctx.options.paths === 'software' ? 2 ** 30 : 4 * 2 ** 30;
  const plan = planUNet(model.config, batch, h, w, true);
  const biggest = Math.max(...plan.tensors.map((t) => t.bytes));
  // the written-out GroupNorm's scratch (software devices) is the widest buffer of all: cat(skip, x) normalised
  const scratch = normScratchBytes(plan);
  // the activations as UNet.build will allocate them (shared where lifetimes do not overlap)
  return (
    Math.max(biggest, scratch) <= ctx.limits.maxStorageBufferBindingSize && planMemory(plan).bytes + scratch <= budget
  );
}

/** Tile origins along one side: n equal tiles of `size` covering `full`, overlapping by at least `overlap`, aligned to m. */
export function tileOrigins(full: number, size: number, overlap: number, m: number): number[] {
  if (size >= full) return [0];
  const n = Math.ceil((full - overlap) / (size - overlap));
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(Math.min(full - size, Math.round((i * (full - size)) / (n - 1) / m) * m));
  return [...new Set(out)];
}

interface TiledOptions extends UpscaleOptions {
  samples: number;
  schedule: string;
  consistency: boolean;
  scale: number;
  up: CubicKernel;
  down: CubicKernel;
  clamp: boolean;
  m: number;
  tile: number;
  out: [number, number];
}

/** A tile's shape: what its sampler and its consistency projection are built for. */
interface TileShape {
  B: number;
  C: number;
  th: number;
  tw: number;
  /** tiles on the canvas: a multistep solver keeps one history per tile */
  tiles: number;
}

/**
 * The sampler of a tile, with the consistency projection's buffers when it runs after each step: what the GPU-canvas
 * tiling (upscaleTiled) and the host-staged one (upscaleStaged) share. bufs are consistencyDispatches' [lr, w, udc,
 * u, (z)]: tileUdc fills lr and udc.
 */
async function tileSampler(
  ctx: GpuContext,
  rs: Resampler,
  model: SR3Model,
  o: TiledOptions,
  t: TileShape,
): Promise<{ sampler: Sampler; bufs: GPUBuffer[]; destroy(): void }> {
  let bufs: GPUBuffer[] = [];
  try {
    const sampler = await Sampler.build(ctx, model, {
      batch: t.B,
      height: t.th,
      width: t.tw,
      sampler: { kind: o.sampler ?? DEFAULT_SAMPLER, schedule: makeSchedule(o.schedule), eta: o.eta },
      params: o.cache?.params(),
      historySlots: MULTISTEP[o.sampler ?? DEFAULT_SAMPLER] ? t.tiles : 1,
      afterStep: o.consistency
        ? async (smp) => {
            const r = await consistencyDispatches(ctx, rs, smp, {
              C: t.C,
              Hp: t.th,
              Wp: t.tw,
              scale: o.scale,
              up: o.up,
              down: o.down,
              samples: t.B,
              n: t.B * t.C * t.th * t.tw,
            });
            bufs = r.bufs;
            return r;
          }
        : undefined,
    });
    return {
      sampler,
      get bufs() {
        return bufs;
      },
      destroy: () => {
        sampler.destroy();
        for (const b of bufs) b.destroy();
      },
    };
  } catch (e) {
    for (const b of bufs) b.destroy();
    throw e;
  }
}

/**
 * The consistency projection's LR side for one tile of an hr-target model: the tile's condition (`cond`, in the
 * sampler) downscaled to its LR and upscaled again, as the whole-image projection makes it. `mine` marks dispatches
 * whose uniforms the caller releases.
 */
function tileUdc(
  rs: Resampler,
  cond: GPUBuffer,
  bufs: GPUBuffer[],
  o: TiledOptions,
  t: TileShape,
  mine: (d: Dispatch) => Dispatch,
): Dispatch[] {
  const [lrTmp, udc] = [bufs[0], bufs[2]];
  const common = { batch: t.B, channels: t.C, factor: o.scale };
  return [
    mine(
      rs.downscale({
        ...common,
        input: cond,
        output: lrTmp,
        inH: t.th,
        inW: t.tw,
        kernel: o.down,
        label: 'tiles.udc.down',
      }),
    ),
    mine(
      rs.upscale({
        ...common,
        input: lrTmp,
        output: udc,
        inH: t.th / o.scale,
        inW: t.tw / o.scale,
        kernel: o.up,
        label: 'tiles.udc.up',
      }),
    ),
  ];
}

/** Upscaling on overlapping tiles sampled jointly: after each step the tiles are blended into one canvas. */
async function upscaleTiled(
  ctx: GpuContext,
  rs: Resampler,
  model: SR3Model,
  lrP: Tensor3,
  o: TiledOptions,
): Promise<Tensor3[]> {
  const C = lrP.channels;
  const B = o.samples;
  const [Hc, Wc] = [lrP.height * o.scale, lrP.width * o.scale];
  const th = Math.min(Math.floor(o.tile / o.m) * o.m, Hc);
  const tw = Math.min(Math.floor(o.tile / o.m) * o.m, Wc);
  if (th < o.m || tw < o.m) throw new Error(`tile ${o.tile} is smaller than this model's multiple of ${o.m}`);
  const ov = o.overlap === undefined ? defaultOverlap(th, tw, o.m) : Math.max(o.m, Math.round(o.overlap / o.m) * o.m);
  if (ov >= Math.min(th, tw)) throw new Error(`overlap ${ov} must be smaller than the tile (${th}x${tw})`);
  const tiles: [number, number][] = [];
  for (const oy of tileOrigins(Hc, th, ov, o.m)) for (const ox of tileOrigins(Wc, tw, ov, o.m)) tiles.push([oy, ox]);
  const regression = modelObjective(model) === 'regression';
  const residual = modelTarget(model) === 'residual';
  const nCanvas = B * C * Hc * Wc;
  // a canvas (or the LR image) larger than one storage binding stays in host memory: only tiles go to the GPU
  if (Math.max(nCanvas, B * lrP.data.length) * 4 > ctx.limits.maxStorageBufferBindingSize) {
    return upscaleStaged(ctx, rs, model, lrP, { ...o, th, tw, ov, tiles, regression });
  }
  const own: GPUBuffer[] = [];
  const buf = (bytes: number, label: string) => {
    const b = ctx.buffer(bytes, label);
    own.push(b);
    return b;
  };
  const lrBuf = buf(B * lrP.data.byteLength, 'tiles.lr');
  for (let s = 0; s < B; s++) ctx.write(lrBuf, lrP.data, s * lrP.data.byteLength);
  const condC = buf(nCanvas * 4, 'tiles.cond');
  const yC = buf(nCanvas * 4, 'tiles.y');
  const num = buf(nCanvas * 4, 'tiles.num');
  const den = buf(Hc * Wc * 4, 'tiles.den');
  const tk = await TileKernels.create(ctx);
  const win = { B, C, Hc, Wc, th, tw, ov };
  const once: Dispatch[] = [];
  const mine = (d: Dispatch) => {
    once.push(d);
    return d;
  };
  const gatherTo = (src: GPUBuffer, dst: GPUBuffer, oy: number, ox: number) =>
    mine(tk.gather({ ...win, oy, ox }, { canvas: src, tile: dst }));
  const accumulateFrom = (src: GPUBuffer, oy: number, ox: number) =>
    mine(tk.accumulate({ ...win, oy, ox }, { tile: src, num, den }));
  const normalized = mine(tk.normalize(win, { num, den, canvas: yC }));
  const submit = (d: Dispatch[], clear = false) => {
    const enc = ctx.device.createCommandEncoder({ label: 'tiles' });
    if (clear) {
      enc.clearBuffer(num);
      enc.clearBuffer(den);
    }
    const pass = enc.beginComputePass({ label: 'tiles' });
    for (const x of d) encodeDispatch(pass, x);
    pass.end();
    ctx.device.queue.submit([enc.finish()]);
  };
  const readCanvas = async () => {
    const y = await ctx.read(yC, nCanvas * 4);
    if (residual) addInPlace(y, await ctx.read(condC, nCanvas * 4));
    const per = C * Hc * Wc;
    return Array.from({ length: B }, (_, s) =>
      crop({ channels: C, height: Hc, width: Wc, data: y.slice(s * per, (s + 1) * per) }, o.out[0], o.out[1]),
    );
  };
  try {
    ctx.run([
      mine(
        rs.upscale({
          input: lrBuf,
          output: condC,
          batch: B,
          channels: C,
          inH: lrP.height,
          inW: lrP.width,
          factor: o.scale,
          kernel: o.up,
          clamp: o.clamp,
          label: 'tiles.condition',
        }),
      ),
    ]);
    if (regression) {
      const net = await regressionNet(ctx, model, B, th, tw, o.cache);
      try {
        submit([], true);
        for (const [oy, ox] of tiles)
          submit([gatherTo(condC, net.cond!, oy, ox), ...net.dispatches, accumulateFrom(net.output, oy, ox)]);
        submit([normalized]);
        return await readCanvas();
      } finally {
        net.destroy();
      }
    }
    // the tile's sampler and projection buffers, kept by an upscaler's cache like the whole-image ones
    // a multistep solver keeps one history per tile, so its sampler serves canvases with as many tiles
    const slots = MULTISTEP[o.sampler ?? DEFAULT_SAMPLER] ? tiles.length : 1;
    const key = `tile:${B}:${th}x${tw}:${o.sampler ?? DEFAULT_SAMPLER}:${o.schedule}:${o.eta ?? 0}:${o.consistency}:${slots}`;
    const shape: TileShape = { B, C, th, tw, tiles: tiles.length };
    const { value: st, release } = await acquire(o.cache, key, () => tileSampler(ctx, rs, model, o, shape));
    const { sampler } = st;
    try {
      const { y, cond } = sampler.buffers;
      const perTile = tiles.map(([oy, ox], i) => {
        const d = [gatherTo(condC, cond, oy, ox), gatherTo(yC, y, oy, ox)];
        if (o.consistency && !residual) d.push(...tileUdc(rs, cond, st.bufs, o, shape, mine));
        return [...d, ...sampler.bodyForTile(i), accumulateFrom(y, oy, ox)];
      });
      await ctx.warmUp([...perTile[0], normalized, ...sampler.dispatches], o.onPrepare);
      const seed = o.seed ?? 0;
      sampler.prepare(seed);
      // the start noise is drawn on the canvas, so overlapping tiles start from the same values
      const rng = await GaussianRng.create(ctx);
      ctx.run([rng.fill({ out: yC, n: nCanvas, seed, sub: 1, label: 'tiles.y_T' }).dispatch]);
      const T = sampler.steps;
      for (let step = 0; step < T; step++) {
        if (o.signal?.aborted) throw o.signal.reason ?? new Error('upscaling cancelled');
        perTile.forEach((d, i) => {
          sampler.setTile(i);
          submit(d, i === 0);
          // reported when the GPU has done the tile, without waiting for it here (a lost device is reported by the
          // step's sync; an error thrown by the callback is not swallowed)
          if (o.onTile) {
            const done = step * tiles.length + i + 1;
            ctx.device.queue.onSubmittedWorkDone().then(
              () => o.onTile?.(done, T * tiles.length),
              () => {},
            );
          }
        });
        submit([normalized, sampler.decrement]);
        await ctx.sync();
        o.onProgress?.(step + 1, T);
      }
      return await readCanvas();
    } finally {
      release();
    }
  } finally {
    for (const b of own) b.destroy();
    releaseDispatches(once);
  }
}

/** Each tile's weight along one side: ramps from 1/(ov+1) up to 1 over `ov` pixels where a neighbour overlaps (TILE_ACCUMULATE_WGSL's). */
function rampWeights(size: number, ov: number, before: boolean, after: boolean): Float32Array {
  const ramp = (d: number, inner: boolean) => (inner ? Math.min(1, (d + 1) / (ov + 1)) : 1);
  return Float32Array.from({ length: size }, (_, i) => ramp(i, before) * ramp(size - 1 - i, after));
}

/**
 * Tiled upscaling whose canvas lives in host memory, for images whose canvas or LR image is larger than one storage
 * binding (maxStorageBufferBindingSize): only tile-sized buffers go to the GPU, so tiling bounds GPU memory whatever
 * the image's size. The same tiles, blend weights and noise as upscaleTiled (the start noise is drawn in chunks of
 * the same stream): the two agree to float rounding. Each step, every tile's y is written from the host canvas,
 * stepped, read back and blended on the host. A tile's condition is the bicubic upscale of its own window of the LR
 * image, taken with the 2 pixels the bicubic kernel reaches beyond it, so it equals the whole image's condition there.
 */
async function upscaleStaged(
  ctx: GpuContext,
  rs: Resampler,
  model: SR3Model,
  lrP: Tensor3,
  o: TiledOptions & { th: number; tw: number; ov: number; tiles: [number, number][]; regression: boolean },
): Promise<Tensor3[]> {
  const { th, tw, ov, tiles, scale: s } = o;
  const C = lrP.channels;
  const B = o.samples;
  const [hl, wl] = [lrP.height, lrP.width];
  const [Hc, Wc] = [hl * s, wl * s];
  const plane = Hc * Wc;
  const nTile = B * C * th * tw;
  const REACH = 2; // LR pixels the bicubic kernel reads beyond an output pixel's own
  const own: GPUBuffer[] = [];
  const buf = (bytes: number, label: string) => {
    const b = ctx.buffer(bytes, label);
    own.push(b);
    return b;
  };
  // every tile's LR window, B copies (the sampler's batch), cut once on the host
  const wins = tiles.map(([oy, ox]) => {
    const r0 = Math.max(0, oy / s - REACH);
    const r1 = Math.min(hl, (oy + th) / s + REACH);
    const c0 = Math.max(0, ox / s - REACH);
    const c1 = Math.min(wl, (ox + tw) / s + REACH);
    const [h, w] = [r1 - r0, c1 - c0];
    const data = new Float32Array(B * C * h * w);
    for (let b = 0; b < B; b++)
      for (let c = 0; c < C; c++)
        for (let y = 0; y < h; y++) {
          const src = (c * hl + r0 + y) * wl + c0;
          data.set(lrP.data.subarray(src, src + w), ((b * C + c) * h + y) * w);
        }
    return { r0, c0, h, w, data };
  });
  const maxWin = Math.max(...wins.map((w) => w.h * w.w));
  const lrWin = buf(B * C * maxWin * 4, 'staged.lr');
  const condWin = buf(B * C * maxWin * s * s * 4, 'staged.cond');
  const tk = await TileKernels.create(ctx);
  const once: Dispatch[] = [];
  const mine = (d: Dispatch) => {
    once.push(d);
    return d;
  };
  /** The dispatches that make tile i's condition in `target` (a tile-sized buffer) from its LR window in lrWin. */
  const condFor = (i: number, target: GPUBuffer): Dispatch[] => {
    const w = wins[i];
    const [oy, ox] = tiles[i];
    const cw = { B, C, Hc: w.h * s, Wc: w.w * s, th, tw, oy: oy - w.r0 * s, ox: ox - w.c0 * s, ov };
    return [
      mine(
        rs.upscale({
          input: lrWin,
          output: condWin,
          batch: B,
          channels: C,
          inH: w.h,
          inW: w.w,
          factor: s,
          kernel: o.up,
          clamp: o.clamp,
          label: 'staged.condition',
        }),
      ),
      mine(tk.gather({ ...cw, label: 'staged.cond.gather' }, { canvas: condWin, tile: target })),
    ];
  };
  const weights = tiles.map(([oy, ox]) => ({
    wy: rampWeights(th, ov, oy > 0, oy + th < Hc),
    wx: rampWeights(tw, ov, ox > 0, ox + tw < Wc),
  }));
  const yH = new Float32Array(B * C * plane);
  const num = new Float32Array(B * C * plane);
  const den = new Float32Array(plane);
  const tileIn = new Float32Array(nTile);
  const cut = (i: number) => {
    const [oy, ox] = tiles[i];
    for (let bc = 0; bc < B * C; bc++)
      for (let y = 0; y < th; y++) {
        const src = (bc * Hc + oy + y) * Wc + ox;
        tileIn.set(yH.subarray(src, src + tw), (bc * th + y) * tw);
      }
    return tileIn;
  };
  const blend = (i: number, t: Float32Array) => {
    const [oy, ox] = tiles[i];
    const { wy, wx } = weights[i];
    for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) den[(oy + y) * Wc + ox + x] += wy[y] * wx[x];
    for (let bc = 0; bc < B * C; bc++)
      for (let y = 0; y < th; y++) {
        const row = (bc * Hc + oy + y) * Wc + ox;
        const trow = (bc * th + y) * tw;
        for (let x = 0; x < tw; x++) num[row + x] += wy[y] * wx[x] * t[trow + x];
      }
  };
  const normalize = () => {
    for (let bc = 0; bc < B * C; bc++)
      for (let p = 0; p < plane; p++) yH[bc * plane + p] = num[bc * plane + p] / den[p];
    num.fill(0);
    den.fill(0);
  };
  const residual = modelTarget(model) === 'residual';
  const result = async () => {
    if (residual) {
      // the residual target's last step, y += cond: each tile's condition is the whole image's there, so writing
      // every tile's over the canvas makes the whole condition (one tile-sized buffer at a time)
      const condTile = buf(nTile * 4, 'staged.cond_out');
      const condH = new Float32Array(B * C * plane);
      for (let i = 0; i < tiles.length; i++) {
        const [oy, ox] = tiles[i];
        ctx.write(lrWin, wins[i].data);
        ctx.run(condFor(i, condTile), 'staged.cond_out');
        const t = await ctx.read(condTile, nTile * 4);
        for (let bc = 0; bc < B * C; bc++)
          for (let y = 0; y < th; y++)
            condH.set(t.subarray((bc * th + y) * tw, (bc * th + y + 1) * tw), (bc * Hc + oy + y) * Wc + ox);
      }
      addInPlace(yH, condH);
    }
    const per = C * plane;
    return Array.from({ length: B }, (_, b) =>
      crop({ channels: C, height: Hc, width: Wc, data: yH.slice(b * per, (b + 1) * per) }, o.out[0], o.out[1]),
    );
  };
  try {
    if (o.regression) {
      const net = await regressionNet(ctx, model, B, th, tw, o.cache);
      try {
        for (let i = 0; i < tiles.length; i++) {
          ctx.write(lrWin, wins[i].data);
          ctx.run([...condFor(i, net.cond!), ...net.dispatches], 'staged.tile');
          blend(i, await ctx.read(net.output, nTile * 4));
          o.onTile?.(i + 1, tiles.length);
        }
        normalize();
        return await result();
      } finally {
        net.destroy();
      }
    }
    const shape: TileShape = { B, C, th, tw, tiles: tiles.length };
    const st = await tileSampler(ctx, rs, model, o, shape);
    const { sampler } = st;
    try {
      const { y, cond } = sampler.buffers;
      const perTile = tiles.map((_, i) => {
        const d = condFor(i, cond);
        if (o.consistency && !residual) d.push(...tileUdc(rs, cond, st.bufs, o, shape, mine));
        return [...d, ...sampler.bodyForTile(i)];
      });
      const seed = o.seed ?? 0;
      sampler.prepare(seed);
      // the start noise: upscaleTiled's one fill over the canvas, drawn here in chunks of at most one binding
      const rng = await GaussianRng.create(ctx);
      const chunk = Math.min(yH.length, 4 * Math.floor(ctx.limits.maxStorageBufferBindingSize / 16));
      const scratch = buf(chunk * 4, 'staged.y_T');
      for (let first = 0; first < yH.length; first += chunk) {
        const n = Math.min(chunk, yH.length - first);
        ctx.run([rng.fill({ out: scratch, n, first, seed, sub: 1, label: 'staged.y_T' }).dispatch]);
        yH.set(await ctx.read(scratch, n * 4), first);
      }
      const T = sampler.steps;
      for (let step = 0; step < T; step++) {
        if (o.signal?.aborted) throw o.signal.reason ?? new Error('upscaling cancelled');
        for (let i = 0; i < tiles.length; i++) {
          sampler.setTile(i);
          ctx.write(lrWin, wins[i].data);
          ctx.write(y, cut(i));
          ctx.run(perTile[i], 'staged.tile');
          blend(i, await ctx.read(y, nTile * 4));
          o.onTile?.(step * tiles.length + i + 1, T * tiles.length);
        }
        normalize();
        ctx.run([sampler.decrement], 'staged.decrement');
        await ctx.sync();
        o.onProgress?.(step + 1, T);
      }
      return await result();
    } finally {
      st.destroy();
    }
  } finally {
    for (const b of own) b.destroy();
    releaseDispatches(once);
  }
}
