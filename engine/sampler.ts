// Samplers: the reverse diffusion loop on the GPU. The U-Net reads cat(cond, y) from two buffers, each step's scalars
// come from a table indexed by a GPU-side step counter, the noise is made on the GPU, and the whole update is one
// kernel, so steps are replayed (several per submission) without any CPU work in between.
import type { SR3Model } from '../weights-format/index.ts';
import { encodeDispatch, type Dispatch, type GpuContext } from './gpu.ts';
import { counterStep, stepBegin, stepUpdates } from './ops/diffusion.ts';
import { GaussianRng, type Fill, type Seed } from './rng.ts';
import type { ScheduleTables } from './schedule.ts';
import { UNet, type UNetParams, type UNetWeights } from './unet.ts';

export const SAMPLERS = ['reference', 'paper', 'ddim', 'dpmpp-2m', 'unipc', 'unipc-bh1'] as const;
export type SamplerKind = (typeof SAMPLERS)[number];

/** The multistep solvers: they keep the x0 predictions of earlier steps on the GPU (DPM-Solver++ one, UniPC two). */
export const MULTISTEP: Readonly<Partial<Record<SamplerKind, number>>> = { 'dpmpp-2m': 1, unipc: 2, 'unipc-bh1': 2 };

export interface SamplerSpec {
  kind: SamplerKind;
  schedule: ScheduleTables;
  /** DDIM's eta (0: deterministic, 1: DDPM-like). */
  eta?: number;
  /** Clamp the x0 prediction to [-1, 1] (the reference sampler always does; default true for the others but paper). */
  clip?: boolean;
}

/** Whether a sampler clamps its x0 predictions to [-1, 1]. */
export function clips(spec: SamplerSpec): boolean {
  return spec.kind === 'reference' || (spec.kind !== 'paper' && spec.clip !== false);
}

/** Floats per step in the table (STEP_ROW in shaders/diffusion.ts). */
export const ROW = 12;

/**
 * The per-step coefficient table (float32, T rows of 12):
 *   [noise level, r1, r2, cx, cy, ce, s, sqrt(gamma_{t-1}), cp1, cp2, 0, 0]
 * with x0 = r1 y - r2 eps (clamped when clipping) and
 *   y' = cx x0 + cy y + ce eps + cp1 x0_{prev} + cp2 x0_{prev2} + s z,
 * where x0_{prev}, x0_{prev2} are the x0 predictions of the two steps before (multistep solvers). Computed in float64.
 * Row t is the step that evaluates the network at level sqrt(gamma_t) (steps run t = T-1 .. 0); the last one (t = 0)
 * goes to gamma_{-1} = 1, the clean image.
 */
export function stepTable(spec: SamplerSpec): Float32Array {
  return Float32Array.from(stepRows(spec));
}

/** stepTable in float64 (for checking the coefficients before their rounding to float32). */
export function stepRows(spec: SamplerSpec): Float64Array {
  const s = spec.schedule;
  const T = s.betas.length;
  const out = new Float64Array(T * ROW);
  const eta = spec.eta ?? 0;
  const solver =
    spec.kind === 'dpmpp-2m' || spec.kind === 'unipc' || spec.kind === 'unipc-bh1' ? solverRows(spec) : null;
  for (let t = 0; t < T; t++) {
    const g = s.gammas[t];
    const a = s.alphas[t];
    // row[7] = sqrt(gamma_{t-1}): the level y has after this step (used by the consistency projection)
    const row: number[] = [Math.sqrt(g), 0, 0, 0, 0, 0, 0, Math.sqrt(s.gammasPrev[t]), 0, 0, 0, 0];
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
      case 'dpmpp-2m':
      case 'unipc':
      case 'unipc-bh1': {
        // x0 = (y - sigma eps) / alpha; the rest from solverRows (indexed by solver step k = T-1-t)
        row[1] = 1 / Math.sqrt(g);
        row[2] = Math.sqrt(1 - g) / Math.sqrt(g);
        const c = solver![T - 1 - t];
        row[4] = c[0];
        row[3] = c[1];
        row[8] = c[2];
        row[9] = c[3];
        break;
      }
      default:
        throw new Error(`unknown sampler '${spec.kind as string}' (choose one of ${SAMPLERS.join(', ')})`);
    }
    out.set(row, t * ROW);
  }
  return out;
}

/**
 * The multistep solvers' updates as linear combinations [cy, cx, cp1, cp2] of (y, m_k, m_{k-1}, m_{k-2}), one per
 * solver step k = 0..T-1 (k = 0 evaluates the noisiest level), where m_k is the x0 prediction of step k. In the
 * solvers' variables alpha = sqrt(gamma), sigma = sqrt(1 - gamma), lambda = log(alpha / sigma); the level after the
 * last step is the clean image (sigma = 0, lambda = +inf), where every solver's update is y' = m_k.
 *
 * - dpmpp-2m: DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, Algorithm 2), data prediction:
 *     y' = (sigma'/sigma) y + alpha' (1 - e^-h) D,  h = lambda' - lambda,
 *     D = m_k (first step) or (1 + 1/(2r)) m_k - 1/(2r) m_{k-1},  r = h_{k-1} / h.
 * - unipc, unipc-bh1: UniPC (Zhao et al. 2023, arXiv:2302.04867) of order 2, data prediction, B(h) = e^h - 1 (bh2)
 *   or h (bh1); the predictor UniP-2 and the corrector UniC. UniC corrects y = x_k with the model output at x_k
 *   itself (so it costs no evaluation); we write the corrected point as x_k + alpha_k B(h) (pred_res - corr_res -
 *   rho_c D1_t), which equals the reference's x_{k-1}-based form and keeps whatever the consistency projection did to x_k.
 *   The first step and the last are first order (the reference's warm-up and lower_order_final).
 */
function solverRows(spec: SamplerSpec): [number, number, number, number][] {
  const s = spec.schedule;
  const T = s.betas.length;
  // levels of solver step k = 0..T (k = T: clean)
  const alpha = (k: number) => (k === T ? 1 : Math.sqrt(s.gammas[T - 1 - k]));
  const sigma = (k: number) => (k === T ? 0 : Math.sqrt(1 - s.gammas[T - 1 - k]));
  const lambda = (k: number) => (k === T ? Infinity : Math.log(alpha(k)) - Math.log(sigma(k)));
  const rows: [number, number, number, number][] = [];
  for (let k = 0; k < T; k++) {
    if (k === T - 1) {
      rows.push([0, 1, 0, 0]); // to the clean image: y' = m_k (first order, sigma' = 0)
      continue;
    }
    const h = lambda(k + 1) - lambda(k);
    const ratio = sigma(k + 1) / sigma(k);
    if (spec.kind === 'dpmpp-2m') {
      const base = alpha(k + 1) * -Math.expm1(-h);
      if (k === 0) rows.push([ratio, base, 0, 0]);
      else {
        const r = (lambda(k) - lambda(k - 1)) / h;
        rows.push([ratio, base * (1 + 1 / (2 * r)), -base / (2 * r), 0]);
      }
      continue;
    }
    const bh1 = spec.kind === 'unipc-bh1';
    // corrector at step k: x_c = [1, a0, a1, a2] . (y, m_k, m_{k-1}, m_{k-2})
    let xc: [number, number, number, number] = [1, 0, 0, 0];
    if (k >= 1) {
      const hc = lambda(k) - lambda(k - 1);
      const hh = -hc;
      const B = bh1 ? hh : Math.expm1(hh);
      const aB = alpha(k) * B;
      if (k === 1) {
        // order 1: rho_c = 1/2, x_c = x_k - alpha B (m_k - m_{k-1}) / 2
        xc = [1, -0.5 * aB, 0.5 * aB, 0];
      } else {
        const rk = (lambda(k - 2) - lambda(k - 1)) / hc;
        const hphi1 = Math.expm1(hh);
        const p1 = hphi1 / hh - 1;
        const b1 = p1 / B;
        const b2 = ((p1 / hh - 0.5) * 2) / B;
        // rho_c solves [[1, 1], [rk, 1]] rho = [b1, b2]
        const rc0 = (b1 - b2) / (1 - rk);
        const rc1 = b1 - rc0;
        // D1 = (m_{k-2} - m_{k-1}) / rk; x_c = x_k + alpha B ((1/2 - rc0) D1 - rc1 (m_k - m_{k-1}))
        const d = (aB * (0.5 - rc0)) / rk;
        xc = [1, -aB * rc1, aB * rc1 - d, d];
      }
    }
    // predictor to k+1 from x_c: (sigma'/sigma) x_c - alpha' hphi1 m_k - alpha' B 0.5 D1', D1' = (m_{k-1} - m_k) / rk'
    const hh = -h;
    const hphi1 = Math.expm1(hh);
    const B = bh1 ? hh : Math.expm1(hh);
    let c0 = -alpha(k + 1) * hphi1;
    let c1 = 0;
    if (k >= 1) {
      const rk = (lambda(k - 1) - lambda(k)) / h;
      const q = (alpha(k + 1) * B * 0.5) / rk;
      c0 += q;
      c1 -= q;
    }
    rows.push([ratio * xc[0], ratio * xc[1] + c0, ratio * xc[2] + c1, ratio * xc[3]]);
  }
  return rows;
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
   * How many independent sets of the multistep solvers' history to keep (one per tile when a step runs over several
   * tiles: bodyForTile(i) uses set i). Default 1.
   */
  historySlots?: number;
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
  /** The body per history slot (tiles); [0] is `body`. */
  private bodies: Dispatch[][] = [];
  private history: GPUBuffer[] = [];
  private stepFill: Fill | null = null;
  private extraFills: Fill[] = [];
  /** Whether a step draws noise (some row's s != 0: the ancestral samplers, DDIM with eta > 0). */
  stochastic = false;
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
    const net = await UNet.build(ctx, model, {
      batch: opts.batch,
      height: opts.height,
      width: opts.width,
      splitInput: true,
      params: opts.params,
    });
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
    const table = stepTable(this.spec);
    const history = MULTISTEP[this.spec.kind] ?? 0;
    const steps = { table: this.table, counter: this.counter };
    const d: Dispatch[] = [];
    d.push(await stepBegin(ctx, { B: net.batch }, { ...steps, level: net.noiseLevel }));
    d.push(...net.dispatches);
    // deterministic samplers (every s = 0) draw no step noise
    for (let t = 0; t < this.steps; t++) if (table[t * ROW + 6] !== 0) this.stochastic = true;
    if (this.noise === 'rng' && this.stochastic) {
      this.stepFill = rng.fill({
        out: this.z,
        n: this.n,
        seed: 0,
        sub: 0,
        streamTable: { buffer: this.counter, slot: 0 },
        label: 'sampler.z',
      });
      d.push(this.stepFill.dispatch);
    }
    // the x0 predictions of the previous steps ([prev, prev2], n values each), one set per slot; a dummy when unused
    const slots = history ? Math.max(1, opts.historySlots ?? 1) : 1;
    for (let i = 0; i < slots; i++) this.history.push(ctx.buffer(history ? 2 * this.n * 4 : 16, 'sampler.history'));
    const updates = await stepUpdates(
      ctx,
      { n: this.n, zStride: this.noise === 'provided' ? this.n : 0, clip: clips(this.spec), history },
      { ...steps, eps: this.eps, z: this.z, y: net.y!, histories: this.history },
    );
    const at = d.length;
    d.push(updates[0]);
    if (opts.afterStep) {
      const extra = await opts.afterStep(this);
      d.push(...extra.dispatches);
      this.extraFills.push(...(extra.fills ?? []));
    }
    this.body = [...d];
    this.bodies = updates.map((u) => d.map((x, i) => (i === at ? u : x)));
    this.decrement = await counterStep(ctx, this.counter, 0xffffffff);
    d.push(this.decrement);
    this.stepDispatches = d;
  }

  /** Every dispatch a run makes (the start noise, then one step), e.g. for GpuContext.warmUp. */
  get dispatches(): Dispatch[] {
    return [this.startFill.dispatch, ...this.stepDispatches];
  }

  /** The buffers a step reads and writes, for extra dispatches (afterStep). */
  get buffers() {
    return { y: this.net.y!, cond: this.net.cond!, counter: this.counter, table: this.table, eps: this.eps };
  }

  setCondition(cond: Float32Array): void {
    const n =
      this.net.batch * (this.net.config.in_channel - this.net.config.out_channel) * this.net.height * this.net.width;
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

  /** One step (without the decrement) that keeps its multistep history in slot i (historySlots), for tile i. */
  bodyForTile(i: number): Dispatch[] {
    if (this.bodies.length === 1) return this.body;
    const b = this.bodies[i];
    if (!b) throw new Error(`tile ${i}: this sampler keeps ${this.bodies.length} history slots`);
    return b;
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
    const per = o.onStep ? 1 : Math.max(1, o.stepsPerSubmit ?? (ctx.options.paths === 'software' ? 1 : 10));
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
    for (const b of [this.table, this.counter, this.z, ...this.history]) b.destroy();
  }
}
