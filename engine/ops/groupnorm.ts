// GroupNorm's host code, forward and backward side by side: the per-(batch, group) statistics (shaders/groupnorm.ts,
// one workgroup a group or split over several on the GPU paths), the normalisation written out (GroupNorm(+Swish)
// materialised: the forward's choice on the software paths, and the backward's weight-gradient input), and the
// gradient of GroupNorm(+Swish) (shaders/groupnorm_backward.ts). The conv kernels fuse the normalisation into their
// input load (engine/ops/conv2d.ts, NORM).
import { actConstant, type Activation } from '../../shaders/activation.ts';
import { ceilDiv, type Dispatch, type GpuContext } from '../gpu.ts';
import {
  GN_STATS_COMBINE_UNIFORM,
  GN_STATS_COMBINE_WGSL,
  GN_STATS_SPLIT_UNIFORM,
  GN_STATS_UNIFORM,
  groupNormStatsSplitWgsl,
  groupNormStatsWgsl,
} from '../../shaders/groupnorm.ts';
import {
  gnApplyWgsl,
  GN_APPLY_UNIFORM,
  GN_BWD_UNIFORM,
  GN_BWD_APPLY_WGSL,
  GN_BWD_PARAMS_WGSL,
  GN_BWD_REDUCE_WGSL,
} from '../../shaders/groupnorm_backward.ts';
import {
  checkWorkgroups,
  dummy,
  grid,
  grid256,
  need,
  noAlias,
  sharedScratch,
  writeDummy,
  type BackwardOptions,
} from './common.ts';
import type { PlanOpFamily } from './plan-ops.ts';

export interface GroupNormSpec {
  B: number;
  C1: number;
  C2: number;
  HW: number;
  groups: number;
  statsOff: number;
  eps?: number;
  label?: string;
}

/**
 * Per-(batch, group) mean and rstd of cat(A, B) into stats[statsOff + (b*G + g)*2 + {0,1}]. Split over several
 * workgroups per group (groupNormStatsSplitWgsl) where (group, batch) pairs alone would give fewer than
 * EngineOptions.gnSplit.target workgroups and a group holds at least 8192 vec4s or floats: GPU paths only (on a CPU
 * device the one-workgroup form is as fast), chunks of at least 2048, at most 64 of them.
 */
export async function groupNormStats(
  ctx: GpuContext,
  spec: GroupNormSpec,
  bufs: { a: GPUBuffer; b?: GPUBuffer; stats: GPUBuffer },
): Promise<Dispatch[]> {
  if ((spec.C1 + spec.C2) % spec.groups !== 0) {
    throw new Error(`${spec.label}: ${spec.C1 + spec.C2} channels do not divide into ${spec.groups} groups`);
  }
  const vec = spec.HW % 4 === 0;
  // units (vec4s or floats) of one group
  const perGroup = (((spec.C1 + spec.C2) / spec.groups) * spec.HW) / (vec ? 4 : 1);
  const eps = spec.eps ?? 1e-5;
  let P = 1;
  const { target, force } = ctx.options.gnSplit;
  if (force !== undefined) P = Math.min(force, perGroup);
  else if (ctx.options.paths === 'gpu' && target > 0 && spec.groups * spec.B < target && perGroup >= 8192) {
    P = Math.min(Math.ceil(target / (spec.groups * spec.B)), Math.floor(perGroup / 2048), 64);
  }
  if (P >= 2) {
    const L = ceilDiv(perGroup, P);
    P = ceilDiv(perGroup, L); // no empty chunk
    const partial = sharedScratch(ctx, 'groupnorm.partials', spec.B * spec.groups * P * 2 * 4);
    const pipeline = await ctx.pipeline(groupNormStatsSplitWgsl(vec), { label: 'groupnorm_stats_split' });
    const u = GN_STATS_SPLIT_UNIFORM.pack({ C1: spec.C1, C2: spec.C2, HW: spec.HW, G: spec.groups, P, L }, spec.label);
    const workgroups: [number, number, number] = [P, spec.groups, spec.B];
    checkWorkgroups(ctx, workgroups, spec.label);
    const cp = await ctx.pipeline(GN_STATS_COMBINE_WGSL, { label: 'groupnorm_stats_combine' });
    const cu = GN_STATS_COMBINE_UNIFORM.pack(
      { BG: spec.B * spec.groups, P, L, units: perGroup, unitSize: vec ? 4 : 1, statsOff: spec.statsOff, eps },
      spec.label,
    );
    // two passes run together: the shared scratch is only valid between them
    return [
      {
        pipeline,
        bindGroup: ctx.bind(
          pipeline,
          [bufs.a, bufs.b ?? dummy(ctx), partial, ctx.uniform(u, `${spec.label}.u`)],
          spec.label,
        ),
        workgroups,
        label: spec.label,
      },
      {
        pipeline: cp,
        bindGroup: ctx.bind(
          cp,
          [partial, bufs.stats, ctx.uniform(cu, `${spec.label}.combine.u`)],
          `${spec.label}.combine`,
        ),
        workgroups: grid(ctx, spec.B * spec.groups, 64, spec.label),
        label: `${spec.label}.combine`,
      },
    ];
  }
  // elements each invocation reads per pass: at least 16 with 256 invocations, else a smaller workgroup
  const WG = perGroup >= 4096 ? 256 : perGroup >= 1024 ? 64 : 32;
  const pipeline = await ctx.pipeline(groupNormStatsWgsl(vec, WG), { label: 'groupnorm_stats' });
  const u = GN_STATS_UNIFORM.pack(
    { C1: spec.C1, C2: spec.C2, HW: spec.HW, G: spec.groups, statsOff: spec.statsOff, eps },
    spec.label,
  );
  const bindGroup = ctx.bind(
    pipeline,
    [bufs.a, bufs.b ?? dummy(ctx), bufs.stats, ctx.uniform(u, `${spec.label}.u`)],
    spec.label,
  );
  const workgroups: [number, number] = [spec.groups, spec.B];
  checkWorkgroups(ctx, workgroups, spec.label);
  return [{ pipeline, bindGroup, workgroups, label: spec.label }];
}

/**
 * A GroupNorm (+ activation) as a conv applies it to its input (groupNormBackward, groupNormApply): the statistics'
 * spec (their eps is in the saved stats), gamma and beta, and the activation.
 */
export interface GroupNormBackwardSpec extends Omit<GroupNormSpec, 'eps'> {
  gammaOff: number;
  betaOff: number;
  /** the forward applied the activation after the normalisation (NORM 2) */
  withAct: boolean;
  /** which activation (default Swish, the reference's) */
  act?: Activation;
}

export function groupNormBackwardScratchBytes(spec: Pick<GroupNormBackwardSpec, 'B' | 'C1' | 'C2' | 'groups'>): number {
  return (spec.B * (spec.C1 + spec.C2) * 2 + spec.B * spec.groups * 2) * 4;
}

/** GN_APPLY_UNIFORM's values, which GN_BWD_UNIFORM starts with. */
function gnApplyFields(spec: GroupNormBackwardSpec): Record<keyof typeof GN_APPLY_UNIFORM.fields, number> {
  const { B, C1, C2, HW, statsOff, betaOff } = spec;
  return { B, C1, C2, HW, G: spec.groups, statsOff, gOff: spec.gammaOff, betaOff, withAct: spec.withAct ? 1 : 0 };
}

/**
 * GroupNorm(+activation) backward from dY (the gradient w.r.t. the normalised(+activated) input, split as dYA / dYB) and
 * the forward's saved stats: dGamma / dBeta into grads[gammaOff + c] / grads[betaOff + c] (summed over batch and
 * pixels), dx into dA / dB. `accumulate` applies to dA / dB; `accumulateParams` to dGamma / dBeta. Three dispatches.
 */
export async function groupNormBackward(
  ctx: GpuContext,
  spec: GroupNormBackwardSpec,
  bufs: {
    params: GPUBuffer;
    a: GPUBuffer;
    b?: GPUBuffer;
    dYA: GPUBuffer;
    dYB?: GPUBuffer;
    stats: GPUBuffer;
    grads: GPUBuffer;
    scratch: GPUBuffer;
    dA: GPUBuffer;
    dB?: GPUBuffer;
  },
  opts: BackwardOptions & { accumulateParams?: boolean } = {},
): Promise<Dispatch[]> {
  const L = spec.label ?? 'groupnorm';
  const C = spec.C1 + spec.C2;
  need(C % spec.groups === 0, `${L}: ${C} channels do not divide into ${spec.groups} groups`);
  need(spec.C2 === 0 || (bufs.b && bufs.dYB && bufs.dB), `${L}: C2 > 0 needs b, dYB and dB`);
  need(
    bufs.scratch.size >= groupNormBackwardScratchBytes(spec),
    `${L}: scratch of ${bufs.scratch.size} bytes, needs ${groupNormBackwardScratchBytes(spec)}`,
  );
  noAlias(
    L,
    { grads: bufs.grads, scratch: bufs.scratch, dA: bufs.dA, dB: bufs.dB },
    { params: bufs.params, a: bufs.a, b: bufs.b, dYA: bufs.dYA, dYB: bufs.dYB, stats: bufs.stats },
  );
  const d = dummy(ctx);
  const u = ctx.uniform(
    GN_BWD_UNIFORM.pack(
      {
        ...gnApplyFields(spec),
        accumulate: opts.accumulate ? 1 : 0,
        accumulateParams: opts.accumulateParams ? 1 : 0,
      },
      L,
    ),
    `${L}.gn_bwd.u`,
  );
  const act = actConstant(spec.act);
  const p1 = await ctx.pipeline(GN_BWD_REDUCE_WGSL, { label: 'gn_bwd_reduce', constants: act });
  const xs = [bufs.params, bufs.a, bufs.b ?? d, bufs.dYA, bufs.dYB ?? d, bufs.stats];
  const b1 = ctx.bind(p1, [...xs, bufs.scratch, u], `${L}.gn_bwd_reduce`);
  const p2 = await ctx.pipeline(GN_BWD_PARAMS_WGSL, { label: 'gn_bwd_params' });
  const b2 = ctx.bind(p2, [bufs.params, bufs.scratch, bufs.grads, u], `${L}.gn_bwd_params`);
  const p3 = await ctx.pipeline(GN_BWD_APPLY_WGSL, { label: 'gn_bwd_apply', constants: act });
  const b3 = ctx.bind(p3, [...xs, bufs.scratch, bufs.dA, bufs.dB ?? writeDummy(ctx), u], `${L}.gn_bwd_apply`);
  checkWorkgroups(ctx, [C, spec.B], L);
  return [
    { pipeline: p1, bindGroup: b1, workgroups: [C, spec.B], label: `${L}.gn_bwd_reduce` },
    { pipeline: p2, bindGroup: b2, workgroups: [ceilDiv(C + spec.B * spec.groups, 64)], label: `${L}.gn_bwd_params` },
    { pipeline: p3, bindGroup: b3, workgroups: grid256(ctx, spec.B * C * spec.HW, L), label: `${L}.gn_bwd_apply` },
  ];
}

/**
 * xn [B, C1+C2, HW] = GroupNorm(+Swish)(cat(a, b)) with the saved stats (the normalisation the forward fuses into its
 * conv's input load, materialised; conv2dBackwardWeight uses it through its `xn` scratch).
 */
export async function groupNormApply(
  ctx: GpuContext,
  spec: GroupNormBackwardSpec,
  bufs: { params: GPUBuffer; a: GPUBuffer; b?: GPUBuffer; stats: GPUBuffer; out: GPUBuffer },
): Promise<Dispatch> {
  const L = spec.label ?? 'groupnorm';
  const C = spec.C1 + spec.C2;
  need(C % spec.groups === 0, `${L}: ${C} channels do not divide into ${spec.groups} groups`);
  need(spec.C2 === 0 || bufs.b, `${L}: C2 > 0 needs b`);
  noAlias(L, { out: bufs.out }, { params: bufs.params, a: bufs.a, b: bufs.b, stats: bufs.stats });
  const vec = spec.HW % 4 === 0;
  const p = await ctx.pipeline(gnApplyWgsl(vec), { label: 'gn_apply', constants: actConstant(spec.act) });
  const u = GN_APPLY_UNIFORM.pack(gnApplyFields(spec), L);
  const bg = ctx.bind(
    p,
    [bufs.params, bufs.a, bufs.b ?? dummy(ctx), bufs.stats, bufs.out, ctx.uniform(u, `${L}.gn_apply.u`)],
    `${L}.gn_apply`,
  );
  return {
    pipeline: p,
    bindGroup: bg,
    workgroups: grid256(ctx, (spec.B * C * spec.HW) / (vec ? 4 : 1), L),
    label: `${L}.gn_apply`,
  };
}

/**
 * The GroupNorm statistics' entry in the plan's op table (engine/ops/plan-ops.ts): no parameters, and no backward of
 * its own, as it is folded into the backward of the conv that applies the normalisation (groupNormBackward).
 */
export const groupNormStatsOp: PlanOpFamily<'gnstats'> = {
  forward: (ctx, op, env) =>
    groupNormStats(ctx, op.spec, { a: env.buf(op.a), b: op.b ? env.buf(op.b) : undefined, stats: env.stats }),
  backward: async () => [],
  paramRanges: () => [],
  scratchBytes: () => ({}),
};
