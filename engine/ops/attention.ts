// Attention's host code, forward and backward side by side: softmax(q.k / sqrt(C)) v over all HW positions of
// qkv [B, 3C, HW] (shaders/attention.ts the flash form, shaders/attention_gemm.ts two GEMMs through a score buffer)
// and its gradient (shaders/attention_backward.ts).
import { ceilDiv, type Dispatch, type GpuContext } from '../gpu.ts';
import { ATTENTION_UNIFORM, attentionWgsl } from '../../shaders/attention.ts';
import {
  ATTENTION_BACKWARD_UNIFORM,
  attentionBackwardKVWgsl,
  attentionBackwardQWgsl,
} from '../../shaders/attention_backward.ts';
import {
  ROW_SOFTMAX_UNIFORM,
  ROW_SOFTMAX_WGSL,
  STRIDED_GEMM_UNIFORM,
  STRIDED_GEMM_WGSL,
} from '../../shaders/attention_gemm.ts';
import { checkWorkgroups, need, noAlias, sharedScratch, type BackwardOptions } from './common.ts';
import type { PlanOpFamily } from './plan-ops.ts';

/**
 * softmax(q.k / sqrt(C)) v over all HW positions, from qkv [B, 3C, HW] into out [B, C, HW]. As two GEMMs through an
 * HW x HW score buffer (shaders/attention_gemm.ts) on the GPU paths, where the flash-style kernel's one workgroup per
 * 16 queries leaves most of the device idle, as long as the scores fit (EngineOptions.attention).
 */
export async function attention(
  ctx: GpuContext,
  spec: { B: number; C: number; HW: number; label?: string },
  bufs: { qkv: GPUBuffer; out: GPUBuffer },
): Promise<Dispatch[]> {
  const scoreBytes = spec.B * spec.HW * spec.HW * 4;
  const o = ctx.options;
  const gemm =
    o.attention === 'auto'
      ? o.paths === 'gpu' && scoreBytes <= Math.min(o.attentionMaxScoreBytes, ctx.limits.maxStorageBufferBindingSize)
      : o.attention === 'gemm';
  if (gemm) return attentionGemm(ctx, spec, bufs);
  const pipeline = await ctx.pipeline(attentionWgsl(Math.ceil(spec.C / 64), spec.HW % 4 === 0), { label: 'attention' });
  const u = ATTENTION_UNIFORM.pack({ C: spec.C, HW: spec.HW, scale: 1 / Math.sqrt(spec.C) }, spec.label);
  const bindGroup = ctx.bind(pipeline, [bufs.qkv, bufs.out, ctx.uniform(u, `${spec.label}.u`)], spec.label);
  const workgroups: [number, number] = [ceilDiv(spec.HW, 16), spec.B];
  checkWorkgroups(ctx, workgroups, spec.label);
  return [{ pipeline, bindGroup, workgroups, label: spec.label }];
}

const fmtMiB = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

/** A strided GEMM's uniform (STRIDED_GEMM_WGSL): sizes, alpha, and per operand offset, batch/row/column strides. */
function gemmUniform(
  ctx: GpuContext,
  label: string,
  g: { M: number; N: number; K: number; alpha: number; a: number[]; b: number[]; c: number[] },
): GPUBuffer {
  const [aOff, aB, aK, aM] = g.a;
  const [bOff, bB, bK, bN] = g.b;
  const [cOff, cB, cM, cN] = g.c;
  const { M, N, K, alpha } = g;
  const u = STRIDED_GEMM_UNIFORM.pack({ M, N, K, alpha, aOff, aB, aK, aM, bOff, bB, bK, bN, cOff, cB, cM, cN }, label);
  return ctx.uniform(u, `${label}.u`);
}

async function attentionGemm(
  ctx: GpuContext,
  spec: { B: number; C: number; HW: number; label?: string },
  bufs: { qkv: GPUBuffer; out: GPUBuffer },
): Promise<Dispatch[]> {
  const L = spec.label ?? 'attention';
  const { B, C, HW } = spec;
  const bytes = B * HW * HW * 4;
  if (bytes > ctx.limits.maxStorageBufferBindingSize) {
    throw new Error(
      `${L}: attention as GEMMs needs ${fmtMiB(bytes)} of scores for ${B} x ${HW} positions, over this device's ` +
        `${fmtMiB(ctx.limits.maxStorageBufferBindingSize)} storage binding limit: use the flash form (SR3_ATTENTION=flash, or leave it unset)`,
    );
  }
  const S = sharedScratch(ctx, 'attention.scores', bytes);
  const gemmP = await ctx.pipeline(STRIDED_GEMM_WGSL, { label: 'attention_gemm' });
  const smP = await ctx.pipeline(ROW_SOFTMAX_WGSL, { label: 'attention_softmax' });
  const per = 3 * C * HW; // one batch element of qkv
  // S(i, j) = scale * sum_c q[c, i] k[c, j]: A(k=c, m=i) = q[c*HW + i], B(k=c, n=j) = k[c*HW + j], C(i, j) = S[i*HW + j]
  const scores: Dispatch = {
    pipeline: gemmP,
    bindGroup: ctx.bind(
      gemmP,
      [
        bufs.qkv,
        bufs.qkv,
        S,
        gemmUniform(ctx, `${L}.scores`, {
          M: HW,
          N: HW,
          K: C,
          alpha: 1 / Math.sqrt(C),
          a: [0, per, HW, 1],
          b: [C * HW, per, HW, 1],
          c: [0, HW * HW, HW, 1],
        }),
      ],
      `${L}.scores`,
    ),
    workgroups: [ceilDiv(HW, 64), ceilDiv(HW, 64), B],
    label: `${L}.scores`,
  };
  const rows = B * HW;
  const softmax: Dispatch = {
    pipeline: smP,
    bindGroup: ctx.bind(
      smP,
      [S, ctx.uniform(ROW_SOFTMAX_UNIFORM.pack({ rows, HW }, L), `${L}.softmax.u`)],
      `${L}.softmax`,
    ),
    workgroups: [Math.min(rows, 65535), ceilDiv(rows, 65535)],
    label: `${L}.softmax`,
  };
  // out(c, i) = sum_j P(i, j) v[c, j]: m = i, n = c; A(k=j, m=i) = P[i*HW + j], B(k=j, n=c) = v[c*HW + j], C = out[c*HW + i]
  const output: Dispatch = {
    pipeline: gemmP,
    bindGroup: ctx.bind(
      gemmP,
      [
        S,
        bufs.qkv,
        bufs.out,
        gemmUniform(ctx, `${L}.pv`, {
          M: HW,
          N: C,
          K: HW,
          alpha: 1,
          a: [0, HW * HW, 1, HW],
          b: [2 * C * HW, per, 1, HW],
          c: [0, C * HW, 1, HW],
        }),
      ],
      `${L}.pv`,
    ),
    workgroups: [ceilDiv(HW, 64), ceilDiv(C, 64), B],
    label: `${L}.pv`,
  };
  for (const d of [scores, softmax, output])
    checkWorkgroups(
      ctx,
      d.workgroups.map((v) => v ?? 1),
      L,
    );
  // recorded together: the shared score buffer is only valid inside the three passes
  return [scores, softmax, output];
}

export function attentionBackwardStatsBytes(spec: { B: number; HW: number }): number {
  return spec.B * spec.HW * 2 * 4;
}

/**
 * Attention core backward: dqkv [B, 3C, HW] (=|+=) the gradient of softmax(q.k/sqrt(C)) v w.r.t. qkv, from qkv and
 * dOut [B, C, HW]. Scores are recomputed in tiles, never stored; `rowStats` (attentionBackwardStatsBytes: per query
 * logsumexp and D = dO.O) is scratch. Two dispatches: dQ (and the row statistics), then dK and dV.
 */
export async function attentionBackward(
  ctx: GpuContext,
  spec: { B: number; C: number; HW: number; label?: string },
  bufs: { qkv: GPUBuffer; dOut: GPUBuffer; dqkv: GPUBuffer; rowStats: GPUBuffer },
  opts: BackwardOptions = {},
): Promise<Dispatch[]> {
  const L = spec.label ?? 'attention';
  need(spec.C >= 1 && spec.HW >= 1 && spec.B >= 1, `${L}: empty attention`);
  need(
    bufs.rowStats.size >= attentionBackwardStatsBytes(spec),
    `${L}: rowStats of ${bufs.rowStats.size} bytes, needs ${attentionBackwardStatsBytes(spec)}`,
  );
  noAlias(L, { dqkv: bufs.dqkv, rowStats: bufs.rowStats }, { qkv: bufs.qkv, dOut: bufs.dOut });
  const R = Math.ceil(spec.C / 16);
  const pq = await ctx.pipeline(attentionBackwardQWgsl(R), { label: 'attention_bwd_q' });
  const pkv = await ctx.pipeline(attentionBackwardKVWgsl(R), { label: 'attention_bwd_kv' });
  const u = ATTENTION_BACKWARD_UNIFORM.pack(
    { C: spec.C, HW: spec.HW, scale: 1 / Math.sqrt(spec.C), accumulate: opts.accumulate ? 1 : 0 },
    L,
  );
  const ub = ctx.uniform(u, `${L}.bwd.u`);
  const list = [bufs.qkv, bufs.dOut, bufs.dqkv, bufs.rowStats, ub];
  const workgroups: [number, number] = [ceilDiv(spec.HW, 16), spec.B];
  checkWorkgroups(ctx, workgroups, L);
  return [
    { pipeline: pq, bindGroup: ctx.bind(pq, list, `${L}.bwd_q`), workgroups, label: `${L}.bwd_q` },
    { pipeline: pkv, bindGroup: ctx.bind(pkv, list, `${L}.bwd_kv`), workgroups, label: `${L}.bwd_kv` },
  ];
}

/** Attention's entry in the plan's op table (engine/ops/plan-ops.ts): no parameters (its projections are convs). */
export const attentionOp: PlanOpFamily<'attention'> = {
  forward: (ctx, op, env) => attention(ctx, op.spec, { qkv: env.buf(op.qkv), out: env.buf(op.out) }),
  backward: (ctx, op, env) =>
    attentionBackward(
      ctx,
      op.spec,
      { qkv: env.buf(op.qkv), dOut: env.grad(op.out), dqkv: env.grad(op.qkv), rowStats: env.scratch.rowStats },
      { accumulate: true },
    ),
  paramRanges: () => [],
  scratchBytes: (op) => ({ rowStats: attentionBackwardStatsBytes(op.spec) }),
};
