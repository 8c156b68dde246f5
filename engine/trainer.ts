// The training loop's step without its I/O: what `sr3 train` does each step between reading photos and writing
// checkpoints, browser-safe (no Node imports), so a page, the CLI and the benchmark run the same code.
//
//   const trainer = await Trainer.create(ctx, weights, { batch: 4, patch: 64, scale: 4, lr: 1e-4, schedule,
//                                                         crops: photoCrops(images, 64) });
//   for (let i = 0; i < 1000; i++) console.log((await trainer.step()).loss);
//   const model = await trainer.modelParams();   // the EMA weights with `ema`, else the trained ones
//
// Each step: HR crops (drawn on the CPU while the GPU runs the previous step) -> on the GPU the condition (antialiased
// bicubic downscale, optional blur, bicubic upscale, clamped) and the noise -> TrainGraph's forward, loss and
// backward -> gradient clipping -> Adam at the warm-up learning rate -> the EMA of the weights. The randomness is
// seeded: crops, timesteps, noise levels and blur sigmas come from one mulberry32 stream seeded by seed + 7919 x (the
// step the run starts at), the noise from the Philox generator at (seed, stream = step). So a run is reproducible
// from its seed and start step, and a resumed run draws a fresh crop stream rather than repeating the first run's.
import type { Schedule, UNetConfig } from '../weights-format/index.ts';
import { expectedParamShapes } from '../weights-format/index.ts';
import type { GpuContext } from './gpu.ts';
import type { PixelImage } from './image.ts';
import { reducePartials } from './ops/loss.ts';
import { clipGradNorm, emaUpdate, warmupLr } from './optim.ts';
import { BICUBIC_TORCH, BICUBIC_TORCH_AA, Resampler } from './resample.ts';
import { type Fill, GaussianRng } from './rng.ts';
import { makeSchedule } from './schedule.ts';
import { gaussianBlur } from './ops/train-data.ts';
import { TrainGraph, type TrainTarget } from './train.ts';
import type { UNetWeights } from './unet.ts';

/** The Gaussian-blur augmentation of the condition: with probability p, sigma ~ U(s0, s1) LR pixels; window radius. */
export interface BlurSpec {
  p: number;
  s0: number;
  s1: number;
  radius: number;
}

/**
 * Where the HR crops come from: write one patch x patch crop, CHW in [-1, 1], into `dst` at `offset`, drawing every
 * random choice (which photo, where, flips) from `rnd` (the trainer's seeded stream: the same seed, the same crops).
 */
export type CropSource = (rnd: () => number, dst: Float32Array, offset: number) => void;

/** What a run carries over: written into a checkpoint by the caller, passed back as `resume` to continue. */
export interface TrainerState {
  /** The trained parameters, flat in TrainGraph's layout (`graph.byName` names them). */
  params: Float32Array;
  /** Adam's two moments (both or neither; without them the optimizer starts fresh). */
  adamM?: Float32Array;
  adamV?: Float32Array;
  /** The EMA of the weights (with `ema` on; without it a resumed EMA starts from the weights it was created with). */
  ema?: Float32Array;
  /** Training steps done: the crop stream's seed and the noise stream continue from it. */
  step: number;
  /** Adam's step count (its bias correction); ignored, and 0, without moments. Default `step`. */
  adamStep?: number;
}

export interface TrainerOptions {
  batch: number;
  /** The square HR crop's side: a multiple of the model's 2^(levels-1) and of `scale`. */
  patch: number;
  /** LR = antialiased bicubic downscale of the HR crop by `scale`; condition = its bicubic upscale, clamped. */
  scale: number;
  /** The training noise schedule (t ~ U{1..T}, sqrt(gamma) uniform between its neighbours, as Algorithm 1). */
  schedule: Schedule;
  /** Adam's learning rate, reached linearly over `warmup` Adam steps (default 0: from the first). */
  lr: number;
  warmup?: number;
  /** Defaults 'l1', 'sum' (the reference's), 'diffusion', 'hr'; see TrainGraphOptions. */
  loss?: 'l1' | 'l2';
  reduction?: 'sum' | 'mean';
  objective?: 'diffusion' | 'regression';
  target?: TrainTarget;
  /** Blur augmentation of the condition (default none). */
  blur?: BlurSpec | null;
  /** EMA decay in [0, 1) (0, the default: no EMA). */
  ema?: number;
  /** Clip the gradients' global L2 norm to this before each update (0, the default: no clipping). */
  clip?: number;
  /** Seeds the crops, noise levels, blur and noise (default 0). */
  seed?: number;
  crops: CropSource;
  /** Continue a run: its parameters, optimizer and EMA, and the step it reached. */
  resume?: Partial<TrainerState> & { step: number };
}

/** mulberry32: a small seeded generator of uniform [0, 1) numbers (crops, timesteps, initial weights). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** PyTorch's default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for conv/linear weights and biases; GN 1/0. */
export function initParams(cfg: UNetConfig, seed: number): Map<string, Float32Array> {
  const rnd = mulberry32(seed);
  const out = new Map<string, Float32Array>();
  const shapes = expectedParamShapes(cfg);
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = new Float32Array(n);
    const isNorm = /(block\.0|norm)\.(weight|bias)$/.test(name);
    if (isNorm) v.fill(name.endsWith('weight') ? 1 : 0);
    else {
      const wShape = name.endsWith('.bias') ? shapes.get(name.replace(/bias$/, 'weight'))! : shape;
      const fanIn = wShape.slice(1).reduce((a, b) => a * b, 1);
      const bound = 1 / Math.sqrt(fanIn);
      for (let i = 0; i < n; i++) v[i] = (rnd() * 2 - 1) * bound;
    }
    out.set(name, v);
  }
  return out;
}

/** A random crop with a random flip and 90-degree turn, as a CHW [-1, 1] tensor written into `dst` at `off`. */
export function randomCrop(img: PixelImage, size: number, rnd: () => number, dst: Float32Array, off: number): void {
  const x0 = Math.floor(rnd() * (img.width - size + 1));
  const y0 = Math.floor(rnd() * (img.height - size + 1));
  const flip = rnd() < 0.5;
  const rot = Math.floor(rnd() * 4);
  const C = img.channels;
  const max = img.bitDepth === 16 ? 65535 : 255;
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      let sx = flip ? size - 1 - x : x;
      let sy = y;
      for (let r = 0; r < rot; r++) [sx, sy] = [sy, size - 1 - sx];
      const s = ((y0 + sy) * img.width + x0 + sx) * C;
      for (let c = 0; c < 3; c++)
        dst[off + (c * size + y) * size + x] = (img.data[s + Math.min(c, C - 1)] / max) * 2 - 1;
    }
}

/** Crops from a set of photos (each at least size x size): a photo drawn uniformly, then randomCrop. */
export function photoCrops(images: readonly PixelImage[], size: number): CropSource {
  if (!images.length) throw new Error('photoCrops: no images');
  for (const img of images)
    if (img.width < size || img.height < size)
      throw new Error(`photoCrops: a ${img.width}x${img.height} image is smaller than the ${size}px patch`);
  return (rnd, dst, off) => randomCrop(images[Math.floor(rnd() * images.length)], size, rnd, dst, off);
}

/**
 * Algorithm 1 of SR3 (or the regression baseline) on one device, step by step: owns the TrainGraph and everything a
 * step does that is not reading photos or writing files (the module comment has the order). Create it with
 * `Trainer.create`; `step()` trains one batch and returns its loss; `state()` and `modelParams()` give what a
 * checkpoint holds; `destroy()` frees its buffers.
 */
export class Trainer {
  /** Inputs of the batch being prepared on the CPU (written to the GPU at the next step). */
  private readonly hr: Float32Array;
  private readonly sqrtGamma: Float32Array;
  private readonly sigma: Float32Array;
  private readonly rnd: () => number;
  private readonly T: number;
  private readonly sqrtGammaPrev: Float64Array;
  private done: number;

  private constructor(
    readonly ctx: GpuContext,
    /** The forward/loss/backward/Adam graph (its buffers: params, grads, adamM/adamV, lossValue). */
    readonly graph: TrainGraph,
    private readonly o: TrainerOptions,
    private readonly noiseFill: Fill,
    private readonly sigmaBuf: GPUBuffer | null,
    /** The EMA of the weights (null without `ema`). */
    readonly emaBuf: GPUBuffer | null,
    private readonly owned: GPUBuffer[],
    step: number,
  ) {
    const B = o.batch;
    this.hr = new Float32Array(B * 3 * o.patch * o.patch);
    this.sqrtGamma = new Float32Array(B);
    this.sigma = new Float32Array(B);
    this.done = step;
    this.rnd = mulberry32((o.seed ?? 0) + step * 7919);
    const tables = makeSchedule(o.schedule);
    this.T = tables.betas.length;
    this.sqrtGammaPrev = tables.sqrtGammaPrev;
    this.prepare();
  }

  static async create(ctx: GpuContext, weights: UNetWeights, o: TrainerOptions): Promise<Trainer> {
    const { batch: B, patch, scale } = o;
    const f = 2 ** (weights.config.channel_mults.length - 1);
    if (patch % f || patch % scale)
      throw new Error(`the patch ${patch} must be a multiple of ${f} (the model's levels) and of the scale ${scale}`);
    const ema = o.ema ?? 0;
    const clip = o.clip ?? 0;
    if (!(ema >= 0 && ema < 1)) throw new Error(`the EMA decay must be in [0, 1), got ${ema}`);
    if (!(clip >= 0)) throw new Error(`the clipping norm must be >= 0, got ${clip}`);
    const seed = o.seed ?? 0;
    const r = o.resume;
    const tg = await TrainGraph.build(ctx, weights, {
      batch: B,
      height: patch,
      width: patch,
      loss: o.loss ?? 'l1',
      reduction: o.reduction ?? 'sum',
      adam: { lr: o.lr },
      objective: o.objective ?? 'diffusion',
      target: o.target ?? 'hr',
    });
    const owned: GPUBuffer[] = [];
    const own = (bytes: number, label: string) => {
      const b = ctx.buffer(bytes, label);
      owned.push(b);
      return b;
    };
    try {
      // the condition from the HR batch on the GPU: LR = antialiased downscale, condition = bicubic upscale, clamped
      const rs = await Resampler.create(ctx);
      const lp = patch / scale;
      const lrBuf = own(B * 3 * lp * lp * 4, 'train.lr');
      const rng = await GaussianRng.create(ctx);
      const noiseFill = rng.fill({ out: tg.noise, n: B * 3 * patch * patch, seed, sub: 7 });
      // the blur augmentation: LR -> blurred LR (sigma 0 for the elements not blurred this step) -> bicubic upscale
      const blur = o.blur ?? null;
      const sigmaBuf = blur ? own(Math.max(16, B * 4), 'train.blur_sigma') : null;
      const lrBlur = blur ? own(B * 3 * lp * lp * 4, 'train.lr_blur') : lrBuf;
      tg.prelude = [
        rs.downscale({
          input: tg.hr,
          output: lrBuf,
          batch: B,
          channels: 3,
          inH: patch,
          inW: patch,
          factor: scale,
          kernel: BICUBIC_TORCH_AA,
        }),
        ...(blur
          ? [
              await gaussianBlur(
                ctx,
                { B, C: 3, H: lp, W: lp, radius: blur.radius },
                { sigma: sigmaBuf!, input: lrBuf, output: lrBlur },
              ),
            ]
          : []),
        rs.upscale({
          input: lrBlur,
          output: tg.cond,
          batch: B,
          channels: 3,
          inH: lp,
          inW: lp,
          factor: scale,
          kernel: BICUBIC_TORCH,
          clamp: true,
        }),
        noiseFill.dispatch,
      ];
      if (clip > 0) {
        const partial = own(reducePartials(tg.nParams) * 4, 'train.clip_partial');
        const norm = own(16, 'train.grad_norm');
        tg.preUpdate = await clipGradNorm(ctx, { n: tg.nParams, maxNorm: clip }, { grads: tg.grads, partial, norm });
      }
      let emaBuf: GPUBuffer | null = null;
      if (ema > 0) {
        emaBuf = own(tg.nParams * 4, 'train.ema');
        // a resumed EMA without its saved values starts from the weights the graph was built with
        const init = r?.ema ?? (await tg.readParams());
        if (init.length !== tg.nParams) throw new Error('the saved EMA does not match this model');
        ctx.write(emaBuf, init);
        tg.postlude = [await emaUpdate(ctx, { n: tg.nParams, decay: ema }, { params: tg.params, ema: emaBuf })];
      }
      if (r) {
        if (r.params && r.params.length !== tg.nParams) throw new Error('the saved parameters do not match this model');
        if (r.adamM || r.adamV) {
          if (!r.adamM || !r.adamV || r.adamM.length !== tg.nParams || r.adamV.length !== tg.nParams)
            throw new Error('the saved optimizer moments do not match this model');
          ctx.write(tg.adamM!, r.adamM);
          ctx.write(tg.adamV!, r.adamV);
          tg.steps = r.adamStep ?? r.step;
        }
        if (r.params) ctx.write(tg.params, r.params);
      }
      return new Trainer(ctx, tg, o, noiseFill, sigmaBuf, emaBuf, owned, r?.step ?? 0);
    } catch (e) {
      for (const b of owned) b.destroy();
      tg.destroy();
      throw e;
    }
  }

  /** Training steps done, counting those of the run resumed. */
  get stepsDone(): number {
    return this.done;
  }

  /** The learning rate the next step will use (the warm-up's, by Adam's step count). */
  get nextLr(): number {
    return warmupLr(this.o.lr, this.graph.steps + 1, this.o.warmup ?? 0);
  }

  /** The next batch on the CPU: crops, and per element Algorithm 1's noise level and the blur's sigma. */
  private prepare(): void {
    const { batch: B, patch } = this.o;
    const rnd = this.rnd;
    const regression = this.o.objective === 'regression';
    const blur = this.o.blur;
    for (let b = 0; b < B; b++) {
      this.o.crops(rnd, this.hr, b * 3 * patch * patch);
      // Algorithm 1: t ~ U{1..T}, sqrt(gamma) ~ U(sqrt(gamma_{t-1}), sqrt(gamma_t)) (sqrtGammaPrev has gamma_{-1} = 1)
      const t = 1 + Math.floor(rnd() * this.T);
      const a = this.sqrtGammaPrev[t - 1];
      const c = this.sqrtGammaPrev[t];
      this.sqrtGamma[b] = regression ? 0 : c + rnd() * (a - c);
      if (blur) this.sigma[b] = rnd() < blur.p ? blur.s0 + rnd() * (blur.s1 - blur.s0) : 0;
    }
  }

  /**
   * One step on the prepared batch; the next batch's crops are drawn while the GPU works. Returns the loss (the
   * caller decides what a non-finite one means) and the learning rate used.
   */
  async step(): Promise<{ loss: number; lr: number }> {
    const { ctx, graph: tg } = this;
    ctx.write(tg.hr, this.hr);
    ctx.write(tg.sqrtGamma, this.sqrtGamma);
    if (this.sigmaBuf) ctx.write(this.sigmaBuf, this.sigma);
    this.noiseFill.setStream(this.done);
    const lr = this.nextLr;
    tg.submit(true, lr);
    this.prepare();
    const loss = (await ctx.read(tg.lossValue, 4))[0];
    this.done++;
    return { loss, lr };
  }

  /** The weights a model file holds, by name: the EMA's with `ema`, else the trained parameters. */
  async modelParams(): Promise<Map<string, Float32Array>> {
    const tg = this.graph;
    return tg.byName(this.emaBuf ? await this.ctx.read(this.emaBuf, tg.nParams * 4) : await tg.readParams());
  }

  /** The run's state for a checkpoint (`moments: false` leaves Adam's moments out: half the size). */
  async state(o: { moments?: boolean } = {}): Promise<TrainerState> {
    const { ctx, graph: tg } = this;
    const bytes = tg.nParams * 4;
    const s: TrainerState = { params: await tg.readParams(), step: this.done, adamStep: tg.steps };
    if (o.moments ?? true) {
      s.adamM = await ctx.read(tg.adamM!, bytes);
      s.adamV = await ctx.read(tg.adamV!, bytes);
    }
    if (this.emaBuf) s.ema = await ctx.read(this.emaBuf, bytes);
    return s;
  }

  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned.length = 0;
    this.graph.destroy();
  }
}
