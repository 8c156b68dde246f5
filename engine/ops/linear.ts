// The noise-level embedding's host code, forward and backward side by side: the reference's PositionalEncoding
// (shaders/embedding.ts) and the linear layers of its MLP (with Swish on the input where the MLP has it), and their
// gradients (shaders/embedding_backward.ts).
import { actConstant, type Activation } from '../../shaders/activation.ts';
import { ceilDiv, type Dispatch, type GpuContext } from '../gpu.ts';
import { LINEAR_UNIFORM, LINEAR_WGSL, POSENC_UNIFORM, POSENC_WGSL } from '../../shaders/embedding.ts';
import {
  LINEAR_DIN_UNIFORM,
  LINEAR_DIN_WGSL,
  LINEAR_DW_UNIFORM,
  LINEAR_DW_WGSL,
} from '../../shaders/embedding_backward.ts';
import { checkWorkgroups, need, noAlias, type BackwardOptions } from './common.ts';

/** The reference's PositionalEncoding(dim) of level [B] into out [B, dim]. */
export async function positionalEncoding(
  ctx: GpuContext,
  spec: { B: number; dim: number; label?: string },
  bufs: { level: GPUBuffer; out: GPUBuffer },
): Promise<Dispatch> {
  const pipeline = await ctx.pipeline(POSENC_WGSL, { label: 'posenc' });
  const bindGroup = ctx.bind(
    pipeline,
    [bufs.level, bufs.out, ctx.uniform(POSENC_UNIFORM.pack({ B: spec.B, dim: spec.dim }, spec.label))],
    spec.label,
  );
  return { pipeline, bindGroup, workgroups: [ceilDiv(spec.B * spec.dim, 64)], label: spec.label };
}

/** out[outOff + b*N + n] = bias[n] + W[n, :] . f(in[inOff + b*K + :]), W and bias in the params buffer. */
export async function linear(
  ctx: GpuContext,
  spec: {
    B: number;
    K: number;
    N: number;
    inOff?: number;
    wOff: number;
    bOff: number;
    outOff?: number;
    actIn?: boolean;
    /** the activation actIn applies (default Swish, the reference's) */
    act?: Activation;
    label?: string;
  },
  bufs: { params: GPUBuffer; inp: GPUBuffer; out: GPUBuffer },
): Promise<Dispatch> {
  const pipeline = await ctx.pipeline(LINEAR_WGSL, { label: 'linear', constants: actConstant(spec.act) });
  const u = LINEAR_UNIFORM.pack(
    {
      B: spec.B,
      K: spec.K,
      N: spec.N,
      inOff: spec.inOff ?? 0,
      wOff: spec.wOff,
      bOff: spec.bOff,
      outOff: spec.outOff ?? 0,
      actIn: spec.actIn ? 1 : 0,
    },
    spec.label,
  );
  const bindGroup = ctx.bind(
    pipeline,
    [bufs.params, bufs.inp, bufs.out, ctx.uniform(u, `${spec.label}.u`)],
    spec.label,
  );
  return { pipeline, bindGroup, workgroups: [ceilDiv(spec.B * spec.N, 64)], label: spec.label };
}

export interface LinearBackwardSpec {
  B: number;
  K: number;
  N: number;
  inOff?: number;
  wOff: number;
  bOff: number;
  dOutOff?: number;
  dInOff?: number;
  actIn?: boolean;
  /** the activation actIn applies (default Swish, the reference's) */
  act?: Activation;
  label?: string;
}

/**
 * Linear backward (linear above with the same spec): grads[wOff + n*K + k] and grads[bOff + n] (=|+=, per
 * accumulateParams) from inp and dOut, and when dIn is given dIn[dInOff + b*K + k] (=|+=, per accumulate) =
 * f'(in) * W^T dOut (f = the activation, with actIn). One or two dispatches.
 */
export async function linearBackward(
  ctx: GpuContext,
  spec: LinearBackwardSpec,
  bufs: { params: GPUBuffer; inp: GPUBuffer; dOut: GPUBuffer; grads: GPUBuffer; dIn?: GPUBuffer },
  opts: BackwardOptions & { accumulateParams?: boolean } = {},
): Promise<Dispatch[]> {
  const L = spec.label ?? 'linear';
  need(spec.B >= 1 && spec.K >= 1 && spec.N >= 1, `${L}: empty linear`);
  noAlias(L, { grads: bufs.grads, dIn: bufs.dIn }, { params: bufs.params, inp: bufs.inp, dOut: bufs.dOut });
  const actIn = spec.actIn ? 1 : 0;
  const pw = await ctx.pipeline(LINEAR_DW_WGSL, {
    label: 'linear_dw',
    constants: { ACT_IN: actIn, ACCUMULATE: opts.accumulateParams ? 1 : 0, ...actConstant(spec.act) },
  });
  const { B, K, N, wOff, bOff } = spec;
  const inOff = spec.inOff ?? 0;
  const dOutOff = spec.dOutOff ?? 0;
  const uw = LINEAR_DW_UNIFORM.pack({ B, K, N, inOff, wOff, bOff, dOutOff }, L);
  const out: Dispatch[] = [
    {
      pipeline: pw,
      bindGroup: ctx.bind(pw, [bufs.inp, bufs.dOut, bufs.grads, ctx.uniform(uw, `${L}.dw.u`)], `${L}.dw`),
      workgroups: [ceilDiv(spec.N * spec.K + spec.N, 64)],
      label: `${L}.dw`,
    },
  ];
  checkWorkgroups(ctx, [ceilDiv(spec.N * spec.K + spec.N, 64)], L);
  if (bufs.dIn) {
    const pi = await ctx.pipeline(LINEAR_DIN_WGSL, {
      label: 'linear_din',
      constants: { ACT_IN: actIn, ACCUMULATE: opts.accumulate ? 1 : 0, ...actConstant(spec.act) },
    });
    const ui = LINEAR_DIN_UNIFORM.pack({ B, K, N, inOff, wOff, dOutOff, dInOff: spec.dInOff ?? 0 }, L);
    out.push({
      pipeline: pi,
      bindGroup: ctx.bind(pi, [bufs.params, bufs.inp, bufs.dOut, bufs.dIn, ctx.uniform(ui, `${L}.din.u`)], `${L}.din`),
      workgroups: [ceilDiv(spec.B * spec.K, 64)],
      label: `${L}.din`,
    });
  }
  return out;
}
