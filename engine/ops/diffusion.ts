// The diffusion steps' host code (shaders/diffusion.ts): the sampler's recorded step (its start, its update and the
// step counter), the consistency projection's two passes, and training's noising. Each records dispatches once; the
// sampler, the upscaler and the trainer compose them into their lists.
import { ceilDiv, type Dispatch, type GpuContext } from '../gpu.ts';
import { rngWorkgroups } from '../rng.ts';
import {
  CONSISTENCY_UNIFORM,
  CONSISTENCY_WGSL,
  COUNTER_STEP_UNIFORM,
  COUNTER_STEP_WGSL,
  NOISIFY_UNIFORM,
  NOISIFY_WGSL,
  STEP_BEGIN_UNIFORM,
  STEP_BEGIN_WGSL,
  STEP_UPDATE_UNIFORM,
  STEP_UPDATE_WGSL,
} from '../../shaders/diffusion.ts';

/** The buffers every step kernel reads: the per-step coefficient table and the GPU-side step counter. */
export interface StepTable {
  table: GPUBuffer;
  counter: GPUBuffer;
}

/** A step's start: level[b] = the noise level of the counter's step, for the B batch elements. */
export async function stepBegin(
  ctx: GpuContext,
  spec: { B: number },
  bufs: StepTable & { level: GPUBuffer },
): Promise<Dispatch> {
  const pipeline = await ctx.pipeline(STEP_BEGIN_WGSL, { label: 'sampler.begin' });
  const u = ctx.uniform(STEP_BEGIN_UNIFORM.pack(spec, 'sampler.begin'));
  return {
    pipeline,
    bindGroup: ctx.bind(pipeline, [bufs.table, bufs.counter, bufs.level, u]),
    workgroups: [ceilDiv(spec.B, 64)],
    label: 'sampler.begin',
  };
}

/**
 * A step's update of y (n values) from the model's eps and the step noise z, one dispatch per history buffer (the
 * multistep solvers' earlier x0 predictions; `history` of them kept, 0 to 2): `zStride` is z's stride per step (n
 * when every step's noise is provided, 0 when one buffer is refilled), `clip` clamps x0 to [-1, 1].
 */
export async function stepUpdates(
  ctx: GpuContext,
  spec: { n: number; zStride: number; clip: boolean; history: number },
  bufs: StepTable & { eps: GPUBuffer; z: GPUBuffer; y: GPUBuffer; histories: GPUBuffer[] },
): Promise<Dispatch[]> {
  const pipeline = await ctx.pipeline(STEP_UPDATE_WGSL, {
    label: 'sampler.update',
    constants: { CLIP: spec.clip ? 1 : 0, HISTORY: spec.history },
  });
  const u = ctx.uniform(STEP_UPDATE_UNIFORM.pack({ n: spec.n, zStride: spec.zStride }, 'sampler.update'));
  return bufs.histories.map((h) => ({
    pipeline,
    bindGroup: ctx.bind(pipeline, [bufs.table, bufs.counter, bufs.eps, bufs.z, bufs.y, h, u]),
    workgroups: rngWorkgroups(spec.n),
    label: 'sampler.update',
  }));
}

/** counter[0] += delta (wrapping: 0xffffffff counts down one step). */
export async function counterStep(ctx: GpuContext, counter: GPUBuffer, delta: number): Promise<Dispatch> {
  const pipeline = await ctx.pipeline(COUNTER_STEP_WGSL, { label: 'sampler.counter' });
  const u = ctx.uniform(COUNTER_STEP_UNIFORM.pack({ delta }, 'sampler.counter'));
  return { pipeline, bindGroup: ctx.bind(pipeline, [counter, u]), workgroups: [1], label: 'sampler.counter' };
}

/**
 * The consistency projection's two elementwise passes over n values (CONSISTENCY_WGSL): `prep` writes
 * w = y - sqrt(1 - g) z; `apply`, once the caller has made u = U(D(w)), writes y = y - u + sqrt(g) udc.
 */
export async function consistencyPasses(
  ctx: GpuContext,
  spec: { n: number },
  bufs: StepTable & { y: GPUBuffer; z: GPUBuffer; w: GPUBuffer; u: GPUBuffer; udc: GPUBuffer },
): Promise<{ prep: Dispatch; apply: Dispatch }> {
  const [prep, apply] = await Promise.all([
    ctx.pipeline(CONSISTENCY_WGSL, { entry: 'prep', label: 'consistency.prep' }),
    ctx.pipeline(CONSISTENCY_WGSL, { entry: 'apply', label: 'consistency.apply' }),
  ]);
  const u = ctx.uniform(CONSISTENCY_UNIFORM.pack(spec, 'consistency'));
  const { table, counter } = bufs;
  const wg = rngWorkgroups(spec.n);
  return {
    prep: {
      pipeline: prep,
      bindGroup: ctx.bind(prep, [table, counter, bufs.y, bufs.z, bufs.w, u]),
      workgroups: wg,
      label: 'consistency.prep',
    },
    apply: {
      pipeline: apply,
      bindGroup: ctx.bind(apply, [table, counter, bufs.u, bufs.udc, bufs.y, u]),
      workgroups: wg,
      label: 'consistency.apply',
    },
  };
}

/**
 * Training's noising (Algorithm 1) of n values in batch elements of `per` each:
 * y = sg[b] y0 + sqrt(1 - sg[b]^2) noise, sg = sqrt(gamma) per batch element (`level`).
 */
export async function noisify(
  ctx: GpuContext,
  spec: { n: number; per: number },
  bufs: { level: GPUBuffer; y0: GPUBuffer; noise: GPUBuffer; y: GPUBuffer },
): Promise<Dispatch> {
  const pipeline = await ctx.pipeline(NOISIFY_WGSL, { label: 'noisify' });
  const u = ctx.uniform(NOISIFY_UNIFORM.pack(spec, 'noisify'));
  return {
    pipeline,
    bindGroup: ctx.bind(pipeline, [bufs.level, bufs.y0, bufs.noise, bufs.y, u]),
    workgroups: rngWorkgroups(spec.n),
    label: 'noisify',
  };
}
