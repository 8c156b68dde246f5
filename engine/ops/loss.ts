// The training loss and the second stage of the GPU reductions (shaders/loss.ts): its value reduced on the GPU and
// its gradient in one recorded pair of dispatches.
import { ceilDiv, type Dispatch, type GpuContext } from '../gpu.ts';
import {
  LOSS_PARTIAL_UNIFORM,
  LOSS_PARTIAL_WGSL,
  REDUCE_FINAL_UNIFORM,
  REDUCE_FINAL_WGSL,
} from '../../shaders/loss.ts';
import { need, noAlias } from './common.ts';

/** Workgroups (= partial sums) the loss and norm reductions use for n elements: at most 256. */
export function reducePartials(n: number): number {
  return Math.max(1, Math.min(256, ceilDiv(n, 256 * 8)));
}

export interface LossSpec {
  n: number;
  kind: 'l1' | 'l2';
  reduction: 'sum' | 'mean';
  predOff?: number;
  targetOff?: number;
  gradOff?: number;
  /** where the value goes in `value` */
  valueOff?: number;
  /** an extra factor on the value and the gradient (default 1) */
  scale?: number;
  label?: string;
}

/**
 * loss = r * sum |pred - target| (l1) or r * sum (pred - target)^2 (l2), r = scale (sum) or scale/n (mean), reduced
 * on the GPU into value[valueOff]; grad[gradOff + i] = dloss/dpred (overwritten): r * sign(d) (sign(0) = 0) or
 * r * 2d. `partial` holds reducePartials(n) floats. Two dispatches.
 */
export async function loss(
  ctx: GpuContext,
  spec: LossSpec,
  bufs: { pred: GPUBuffer; target: GPUBuffer; grad: GPUBuffer; partial: GPUBuffer; value: GPUBuffer },
): Promise<Dispatch[]> {
  const L = spec.label ?? 'loss';
  need(Number.isInteger(spec.n) && spec.n >= 1, `${L}: n must be a positive integer, got ${spec.n}`);
  need(spec.kind === 'l1' || spec.kind === 'l2', `${L}: unknown loss ${String(spec.kind)} (l1 or l2)`);
  need(
    spec.reduction === 'sum' || spec.reduction === 'mean',
    `${L}: unknown reduction ${String(spec.reduction)} (sum or mean)`,
  );
  const P = reducePartials(spec.n);
  need(bufs.partial.size >= P * 4, `${L}: partial buffer of ${bufs.partial.size} bytes, needs ${P * 4}`);
  noAlias(L, { grad: bufs.grad, partial: bufs.partial }, { pred: bufs.pred, target: bufs.target });
  noAlias(L, { value: bufs.value }, { partial: bufs.partial });
  const r = (spec.scale ?? 1) / (spec.reduction === 'mean' ? spec.n : 1);
  const p1 = await ctx.pipeline(LOSS_PARTIAL_WGSL, {
    label: 'loss_partial',
    constants: { L2: spec.kind === 'l2' ? 1 : 0 },
  });
  const u1 = ctx.uniform(
    LOSS_PARTIAL_UNIFORM.pack(
      {
        n: spec.n,
        predOff: spec.predOff ?? 0,
        targetOff: spec.targetOff ?? 0,
        gradOff: spec.gradOff ?? 0,
        gradScale: r,
      },
      L,
    ),
    `${L}.u`,
  );
  const p2 = await ctx.pipeline(REDUCE_FINAL_WGSL, { label: 'reduce_final', constants: { SQRT: 0 } });
  const u2 = ctx.uniform(REDUCE_FINAL_UNIFORM.pack({ count: P, outOff: spec.valueOff ?? 0, scale: r }, L), `${L}.u`);
  return [
    {
      pipeline: p1,
      bindGroup: ctx.bind(p1, [bufs.pred, bufs.target, bufs.grad, bufs.partial, u1], `${L}.partial`),
      workgroups: [P],
      label: `${L}.partial`,
    },
    {
      pipeline: p2,
      bindGroup: ctx.bind(p2, [bufs.partial, bufs.value, u2], `${L}.value`),
      workgroups: [1],
      label: `${L}.value`,
    },
  ];
}

/** out[outOff] = scale * sum(partial[0 .. count)) (or scale * sqrt of it): the second stage of a reduction. */
export async function reduceFinal(
  ctx: GpuContext,
  spec: { count: number; outOff?: number; scale?: number; sqrt?: boolean; label?: string },
  bufs: { partial: GPUBuffer; out: GPUBuffer },
): Promise<Dispatch> {
  const L = spec.label ?? 'reduce';
  const p = await ctx.pipeline(REDUCE_FINAL_WGSL, { label: 'reduce_final', constants: { SQRT: spec.sqrt ? 1 : 0 } });
  const u = ctx.uniform(
    REDUCE_FINAL_UNIFORM.pack({ count: spec.count, outOff: spec.outOff ?? 0, scale: spec.scale ?? 1 }, L),
    `${L}.u`,
  );
  return { pipeline: p, bindGroup: ctx.bind(p, [bufs.partial, bufs.out, u], L), workgroups: [1], label: L };
}
