// Samplers: the reverse diffusion loop on the GPU. The U-Net reads cat(cond, y) from two buffers, each step's scalars
// come from a table indexed by a GPU-side step counter, the noise is made on the GPU, and the whole update is one
// kernel, so steps are replayed (several per submission) without any CPU work in between.
import type { SR3Model } from '../weights-format/index.ts';
import { ceilDiv, encodeDispatch, type Dispatch, type GpuContext } from './gpu.ts';
import { GaussianRng, rngWorkgroups, type Fill, type Seed } from './rng.ts';
import type { ScheduleTables } from './schedule.ts';
import { UNet, type UNetParams, type UNetWeights } from './unet.ts';
import { COUNTER_STEP_WGSL, STEP_BEGIN_WGSL, STEP_UPDATE_WGSL } from '../shaders/diffusion.ts';

export const SAMPLERS = ['reference', 'paper', 'ddim'] as const;
export type SamplerKind = (typeof SAMPLERS)[number];

export interface SamplerSpec {
  kind: SamplerKind;
  schedule: ScheduleTables;
  /** DDIM's eta (0: deterministic, 1: DDPM-like). */
  eta?: number;
  /** Clamp the x0 prediction to [-1, 1] (the reference sampler always does; default true for ddim too). */
  clip?: boolean;
}

const ROW = 8;

/**
 * The per-step coefficient table (float32, T rows of 8): [noise level, r1, r2, cx, cy, ce, s, sqrt(gamma_{t-1})] with
 * x0 = r1 y - r2 eps (clamped when clipping), y' = cx x0 + cy y + ce eps + s z. Computed in float64.
 */
export function stepTable(spec: SamplerSpec): Float32Array {
  const s = spec.schedule;
  const T = s.betas.length;
  const out = new Float32Array(T * ROW);
  const eta = spec.eta ?? 0;
  for (let t = 0; t < T; t++) {
    const g = s.gammas[t];
    const a = s.alphas[t];
    // row[7] = sqrt(gamma_{t-1}): the level y has after this step (used by the consistency projection)
    const row: number[] = [Math.sqrt(g), 0, 0, 0, 0, 0, 0, Math.sqrt(s.gammasPrev[t])];
    switch (spec.kind) {
      case 'reference':
        row[1] = s.sqrtRecipGamma[t];
        row[2] = s.sqrtRecipm1Gamma[t];
        row[3] = s.posteriorMeanCoef1[t];
        row[4] = s.posteriorMeanCoef2[t];
        row[6] = t > 0 ? Math.exp(0.5 * s.posteriorLogVarianceClipped[t]) : 0;
        break;
      case 'paper':
        row[4] = 1 / Math.sqrt(a);
        row[5] = -(1 - a) / (Math.sqrt(1 - g) * Math.sqrt(a));
        row[6] = t > 0 ? Math.sqrt(1 - a) : 0;
        break;
      case 'ddim': {
        const gp = s.gammasPrev[t];
        const sigma = eta * Math.sqrt((1 - gp) / (1 - g)) * Math.sqrt(Math.max(0, 1 - g / gp));
        row[1] = 1 / Math.sqrt(g);
        row[2] = Math.sqrt(1 - g) / Math.sqrt(g);
        row[3] = Math.sqrt(gp);
        row[5] = Math.sqrt(Math.max(0, 1 - gp - sigma * sigma));
        row[6] = t > 0 ? sigma : 0;
        break;
      }
      default:
        throw new Error(`unknown sampler '${spec.kind as string}' (choose one of ${SAMPLERS.join(', ')})`);
    }
    out.set(row, t * ROW);
  }
  return out;
}

export interface SamplerBuildOptions {
  batch: number;
  height: number;
  width: number;
  sampler: SamplerSpec;
  /**
   * Where each step's noise z comes from: 'rng' (the GPU generator; reproducible from the seed) or 'provided' (a
   * buffer of T * n values written with setNoise(); for checking against another implementation).
   */
  noise?: 'rng' | 'provided';
  /**
   * Extra dispatches run after each step's update (e.g. the consistency projection), given the sampler; their noise
   * fills are reseeded with the run's seed.
   */
  afterStep?: (s: Sampler) => Promise<{ dispatches: Dispatch[]; fills?: Fill[] }>;
  /** The model's parameters already on the device (uploadUNetParams), shared instead of uploaded again. */
  params?: UNetParams;
}

export interface RunOptions {
  seed?: Seed;
  /** Steps per submission (default: 1 on a software device, 10 otherwise). */
  stepsPerSubmit?: number;
  /** Start from the y already in the buffer (setStart) instead of fresh noise. */
  keepStart?: boolean;
  onProgress?: (done: number, total: number) => void;
  /** Called after every step with the step index t (T-1 .. 0); forces one step per submission. */
  onStep?: (t: number) => Promise<void> | void;
  signal?: AbortSignal;
}

export class Sampler {
  readonly steps: number;
  readonly n: number;
  private stepDispatches: Dispatch[] = [];
  /** One step without the step counter's decrement (for callers that run a step over several tiles). */
  body: Dispatch[] = [];
  /** The step counter's decrement: the end of a step. */
  decrement!: Dispatch;
  private startFill!: Fill;
  private stepFill: Fill | null = null;
  private extraFills: Fill[] = [];
  private constructor(
    readonly ctx: GpuContext,
    readonly net: UNet,
    readonly spec: SamplerSpec,
    private readonly table: GPUBuffer,
    private readonly counter: GPUBuffer,
    private readonly z: GPUBuffer,
    private readonly eps: GPUBuffer,
    readonly noise: 'rng' | 'provided',
  ) {
    this.steps = spec.schedule.betas.length;
    this.n = net.batch * net.config.out_channel * net.height * net.width;
  }

  static async build(ctx: GpuContext, model: UNetWeights | SR3Model, opts: SamplerBuildOptions): Promise<Sampler> {
    const net = await UNet.build(ctx, model, { batch: opts.batch, height: opts.height, width: opts.width, splitInput: true, params: opts.params });
    const T = opts.sampler.schedule.betas.length;
    if (T < 1) throw new Error('the sampling schedule has no steps');
    const n = opts.batch * net.config.out_channel * opts.height * opts.width;
    const noise = opts.noise ?? 'rng';
    const table = ctx.upload(stepTable(opts.sampler), 'sampler.table');
    const counter = ctx.buffer(16, 'sampler.step');
    const z = ctx.buffer((noise === 'provided' ? T : 1) * n * 4, 'sampler.z');
    const s = new Sampler(ctx, net, opts.sampler, table, counter, z, net.output, noise);
    await s.record(opts);
    return s;
  }

  private async record(opts: SamplerBuildOptions): Promise<void> {
    const ctx = this.ctx;
    const net = this.net;
    const rng = await GaussianRng.create(ctx);
    this.startFill = rng.fill({ out: net.y!, n: this.n, seed: 0, sub: 1, label: 'sampler.y_T' });
    const begin = await ctx.pipeline(STEP_BEGIN_WGSL, { label: 'sampler.begin' });
    const update = await ctx.pipeline(STEP_UPDATE_WGSL, {
      label: 'sampler.update',
      constants: { CLIP: this.spec.kind === 'reference' || (this.spec.kind === 'ddim' && this.spec.clip !== false) ? 1 : 0 },
    });
    const dec = await ctx.pipeline(COUNTER_STEP_WGSL, { label: 'sampler.counter' });
    const d: Dispatch[] = [];
    d.push({
      pipeline: begin,
      bindGroup: ctx.bind(begin, [this.table, this.counter, net.noiseLevel, ctx.uniform(new Uint32Array([net.batch, 0, 0, 0]))]),
      workgroups: [ceilDiv(net.batch, 64)],
      label: 'sampler.begin',
    });
    d.push(...net.dispatches);
    if (this.noise === 'rng') {
      this.stepFill = rng.fill({ out: this.z, n: this.n, seed: 0, sub: 0, streamTable: { buffer: this.counter, slot: 0 }, label: 'sampler.z' });
      d.push(this.stepFill.dispatch);
    }
    const zStride = this.noise === 'provided' ? this.n : 0;
    d.push({
      pipeline: update,
      bindGroup: ctx.bind(update, [this.table, this.counter, this.eps, this.z, net.y!, ctx.uniform(new Uint32Array([this.n, zStride, 0, 0]))]),
      workgroups: rngWorkgroups(this.n),
      label: 'sampler.update',
    });
    if (opts.afterStep) {
      const extra = await opts.afterStep(this);
      d.push(...extra.dispatches);
      this.extraFills.push(...(extra.fills ?? []));
    }
    this.body = [...d];
    this.decrement = {
      pipeline: dec,
      bindGroup: ctx.bind(dec, [this.counter, ctx.uniform(new Uint32Array([0xffffffff, 0, 0, 0]))]),
      workgroups: [1],
      label: 'sampler.counter',
    };
    d.push(this.decrement);
    this.stepDispatches = d;
  }

  /** The buffers a step reads and writes, for extra dispatches (afterStep). */
  get buffers() {
    return { y: this.net.y!, cond: this.net.cond!, counter: this.counter, table: this.table, eps: this.eps };
  }

  setCondition(cond: Float32Array): void {
    const n = this.net.batch * (this.net.config.in_channel - this.net.config.out_channel) * this.net.height * this.net.width;
    if (cond.length !== n) throw new Error(`condition has ${cond.length} values, expected ${n}`);
    this.ctx.write(this.net.cond!, cond);
  }

  setStart(yT: Float32Array): void {
    if (yT.length !== this.n) throw new Error(`y_T has ${yT.length} values, expected ${this.n}`);
    this.ctx.write(this.net.y!, yT);
  }

  /** With noise 'provided': z for every step, z[t] at [t * n, (t + 1) * n). */
  setNoise(zs: Float32Array[]): void {
    if (this.noise !== 'provided') throw new Error("setNoise needs a sampler built with noise: 'provided'");
    if (zs.length !== this.steps) throw new Error(`need ${this.steps} noise tensors, got ${zs.length}`);
    zs.forEach((z, t) => {
      if (z.length !== this.n) throw new Error(`z.${t} has ${z.length} values, expected ${this.n}`);
      this.ctx.write(this.z, z, t * this.n * 4);
    });
  }

  /** Seed the step noise and set the step counter to the first step (T-1). */
  prepare(seed: Seed): void {
    if (this.stepFill) this.stepFill.setSeed(seed);
    for (const f of this.extraFills) f.setSeed(seed);
    this.ctx.write(this.counter, new Uint32Array([this.steps - 1, 0, 0, 0]));
  }

  /** Give tile `i` its own noise (the `sub` counter of every fill of a step). */
  setTile(i: number): void {
    this.stepFill?.setSub(4 * i);
    for (const f of this.extraFills) f.setSub(4 * i + 2);
  }

  /** Run all T steps; y (this.buffers.y) holds the result. */
  async run(o: RunOptions = {}): Promise<void> {
    const ctx = this.ctx;
    const T = this.steps;
    const seed = o.seed ?? 0;
    this.prepare(seed);
    if (!o.keepStart) {
      this.startFill.setSeed(seed);
      ctx.run([this.startFill.dispatch], 'sampler.start');
    }
    const per = o.onStep ? 1 : Math.max(1, o.stepsPerSubmit ?? (ctx.adapter.isSoftware ? 1 : 10));
    let done = 0;
    while (done < T) {
      if (o.signal?.aborted) throw o.signal.reason ?? new Error('sampling cancelled');
      const k = Math.min(per, T - done);
      const enc = ctx.device.createCommandEncoder({ label: 'sampler.steps' });
      const pass = enc.beginComputePass({ label: 'sampler.steps' });
      for (let i = 0; i < k; i++) for (const d of this.stepDispatches) encodeDispatch(pass, d);
      pass.end();
      ctx.device.queue.submit([enc.finish()]);
      await ctx.sync();
      done += k;
      if (o.onStep) await o.onStep(T - done);
      o.onProgress?.(done, T);
    }
  }

  async readY(): Promise<Float32Array> {
    return this.ctx.read(this.net.y!, this.n * 4);
  }

  destroy(): void {
    this.net.destroy();
    for (const b of [this.table, this.counter, this.z]) b.destroy();
  }
}
