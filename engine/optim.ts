// Optimizer on the GPU over flat f32 parameter buffers: Adam exactly as torch.optim.Adam, global gradient-norm
// clipping as torch.nn.utils.clip_grad_norm_, an EMA of the weights, and the learning-rate warm-up schedule.
// Dispatches are recorded once; the step-dependent scalars live in a uniform that `setStep` rewrites before a replay.
import type { Dispatch, GpuContext } from './gpu.ts';
import { grid256 } from './ops/common.ts';
import { reduceFinal, reducePartials } from './ops/loss.ts';
import {
  ADAM_UNIFORM,
  ADAM_WGSL,
  CLIP_SCALE_UNIFORM,
  CLIP_SCALE_WGSL,
  EMA_UNIFORM,
  EMA_WGSL,
  SUMSQ_PARTIAL_UNIFORM,
  SUMSQ_PARTIAL_WGSL,
} from '../shaders/adam.ts';

export interface AdamOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

/** The f32 scalars of Adam step `step` (1-based), computed in float64 as torch does in Python. */
export function adamScalars(
  step: number,
  o: AdamOptions,
): {
  negStepSize: number;
  lerpW: number;
  beta2: number;
  oneMinusBeta2: number;
  bc2Sqrt: number;
  eps: number;
  weightDecay: number;
} {
  if (!Number.isInteger(step) || step < 1) throw new Error(`Adam step must be a positive integer, got ${step}`);
  const b1 = o.beta1 ?? 0.9;
  const b2 = o.beta2 ?? 0.999;
  const bc1 = 1 - b1 ** step;
  const bc2 = 1 - b2 ** step;
  return {
    negStepSize: -(o.lr / bc1),
    lerpW: 1 - b1,
    beta2: b2,
    oneMinusBeta2: 1 - b2,
    bc2Sqrt: Math.sqrt(bc2),
    eps: o.eps ?? 1e-8,
    weightDecay: o.weightDecay ?? 0,
  };
}

function checkAdam(o: AdamOptions): void {
  const b1 = o.beta1 ?? 0.9;
  const b2 = o.beta2 ?? 0.999;
  if (!(o.lr >= 0) || !Number.isFinite(o.lr)) throw new Error(`Adam: invalid learning rate ${o.lr}`);
  if (!(b1 >= 0 && b1 < 1)) throw new Error(`Adam: invalid beta1 ${b1} (0 <= beta1 < 1)`);
  if (!(b2 >= 0 && b2 < 1)) throw new Error(`Adam: invalid beta2 ${b2} (0 <= beta2 < 1)`);
  if (!((o.eps ?? 1e-8) >= 0)) throw new Error(`Adam: invalid eps ${o.eps}`);
  if (!((o.weightDecay ?? 0) >= 0)) throw new Error(`Adam: invalid weight decay ${o.weightDecay}`);
}

export interface AdamDispatch extends Dispatch {
  /** Set the step number (1 for the first update) and optionally a new learning rate; call before each replay. */
  setStep(step: number, lr?: number): void;
  readonly options: Readonly<AdamOptions>;
}

/**
 * One torch.optim.Adam step over params[0..n) with grads, exp_avg `m` and exp_avg_sq `v` (all [n] f32, m and v zero
 * before the first step): updates params, m, v in place. `setStep(t)` must be called (t = 1, 2, ...) before each
 * submission; it starts at step 1.
 */
export async function adam(
  ctx: GpuContext,
  spec: { n: number; label?: string } & AdamOptions,
  bufs: { params: GPUBuffer; grads: GPUBuffer; m: GPUBuffer; v: GPUBuffer },
): Promise<AdamDispatch> {
  const L = spec.label ?? 'adam';
  const options: AdamOptions = {
    lr: spec.lr,
    beta1: spec.beta1,
    beta2: spec.beta2,
    eps: spec.eps,
    weightDecay: spec.weightDecay,
  };
  checkAdam(options);
  const n = spec.n;
  if (!Number.isInteger(n) || n < 1) throw new Error(`${L}: n must be a positive integer, got ${n}`);
  for (const [k, b] of Object.entries(bufs)) {
    if (b.size < n * 4) throw new Error(`${L}: ${k} holds ${b.size / 4} floats, fewer than the ${n} parameters`);
  }
  if (new Set(Object.values(bufs)).size !== 4)
    throw new Error(`${L}: params, grads, m and v must be four different buffers`);
  const pipeline = await ctx.pipeline(ADAM_WGSL, { label: 'adam' });
  const ubuf = ctx.uniform(new ArrayBuffer(ADAM_UNIFORM.bytes), `${L}.u`);
  const bindGroup = ctx.bind(pipeline, [bufs.params, bufs.grads, bufs.m, bufs.v, ubuf], L);
  const setStep = (step: number, lr?: number) => {
    if (lr !== undefined) {
      options.lr = lr;
      checkAdam(options);
    }
    const s = adamScalars(step, options);
    const { negStepSize, lerpW, beta2, oneMinusBeta2, bc2Sqrt, eps, weightDecay } = s;
    const u = ADAM_UNIFORM.pack({ n, negStepSize, lerpW, beta2, oneMinusBeta2, bc2Sqrt, eps, weightDecay }, L);
    ctx.device.queue.writeBuffer(ubuf, 0, u);
  };
  setStep(1);
  return { pipeline, bindGroup, workgroups: grid256(ctx, n, L), label: L, setStep, options };
}

/** Linear learning-rate warm-up: lr * min(1, step / warmup) (no warm-up when warmup <= 0). */
export function warmupLr(lr: number, step: number, warmup: number): number {
  return warmup > 0 ? lr * Math.min(1, step / warmup) : lr;
}

/**
 * Global L2 norm of x[off .. off+n) into out[outOff] (two dispatches; `partial` holds reducePartials(n) floats).
 */
export async function globalNorm(
  ctx: GpuContext,
  spec: { n: number; off?: number; outOff?: number; label?: string },
  bufs: { x: GPUBuffer; partial: GPUBuffer; out: GPUBuffer },
): Promise<Dispatch[]> {
  const L = spec.label ?? 'grad_norm';
  const P = reducePartials(spec.n);
  if (bufs.partial.size < P * 4) throw new Error(`${L}: partial buffer of ${bufs.partial.size} bytes, needs ${P * 4}`);
  const p = await ctx.pipeline(SUMSQ_PARTIAL_WGSL, { label: 'sumsq_partial' });
  const u = ctx.uniform(SUMSQ_PARTIAL_UNIFORM.pack({ n: spec.n, off: spec.off ?? 0 }, L), `${L}.u`);
  return [
    {
      pipeline: p,
      bindGroup: ctx.bind(p, [bufs.x, bufs.partial, u], `${L}.partial`),
      workgroups: [P],
      label: `${L}.partial`,
    },
    await reduceFinal(
      ctx,
      { count: P, outOff: spec.outOff, sqrt: true, label: `${L}.final` },
      { partial: bufs.partial, out: bufs.out },
    ),
  ];
}

/**
 * torch.nn.utils.clip_grad_norm_(params, maxNorm) over grads[0..n): the global norm into norm[normOff] (readable
 * afterwards, e.g. for logging), then grads *= min(1, maxNorm / (norm + 1e-6)) with the norm read on the GPU.
 * Three dispatches.
 */
export async function clipGradNorm(
  ctx: GpuContext,
  spec: { n: number; maxNorm: number; normOff?: number; label?: string },
  bufs: { grads: GPUBuffer; partial: GPUBuffer; norm: GPUBuffer },
): Promise<Dispatch[]> {
  const L = spec.label ?? 'clip_grad_norm';
  if (!(spec.maxNorm > 0)) throw new Error(`${L}: max norm must be positive, got ${spec.maxNorm}`);
  const first = await globalNorm(
    ctx,
    { n: spec.n, outOff: spec.normOff, label: L },
    { x: bufs.grads, partial: bufs.partial, out: bufs.norm },
  );
  const p = await ctx.pipeline(CLIP_SCALE_WGSL, { label: 'clip_scale' });
  const u = CLIP_SCALE_UNIFORM.pack({ n: spec.n, normOff: spec.normOff ?? 0, maxNorm: spec.maxNorm }, L);
  return [
    ...first,
    {
      pipeline: p,
      bindGroup: ctx.bind(p, [bufs.norm, bufs.grads, ctx.uniform(u, `${L}.scale.u`)], `${L}.scale`),
      workgroups: grid256(ctx, spec.n, L),
      label: `${L}.scale`,
    },
  ];
}

/** ema = ema * decay + (1 - decay) * params over [0, n). */
export async function emaUpdate(
  ctx: GpuContext,
  spec: { n: number; decay: number; label?: string },
  bufs: { params: GPUBuffer; ema: GPUBuffer },
): Promise<Dispatch> {
  const L = spec.label ?? 'ema';
  if (!(spec.decay >= 0 && spec.decay <= 1)) throw new Error(`${L}: decay must be in [0, 1], got ${spec.decay}`);
  const p = await ctx.pipeline(EMA_WGSL, { label: 'ema' });
  const u = EMA_UNIFORM.pack({ n: spec.n, decay: spec.decay, oneMinusDecay: 1 - spec.decay }, L);
  return {
    pipeline: p,
    bindGroup: ctx.bind(p, [bufs.params, bufs.ema, ctx.uniform(u, `${L}.u`)], L),
    workgroups: grid256(ctx, spec.n, L),
    label: L,
  };
}
