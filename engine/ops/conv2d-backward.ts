// conv2d's backward host code (the forward is conv2d.ts): the input gradient (the generic kernel, or on software
// devices a direct conv of the flipped weights for stride 1 and direct strided kernels for stride 2 and upsampling),
// the weight gradient (split over reduction slices, or banded direct kernels on software devices), the bias and
// embedding gradients (per-channel sums), and the whole fused conv's backward through GroupNorm(+Swish).
//
// Conventions (shared with the other ops' backward recorders):
// - Parameter gradients go to a flat `grads` buffer laid out exactly like `params` (same offsets).
// - `accumulate: false` (default) overwrites the destination; `true` adds into it (a uniform flag), for a
//   tensor that feeds two consumers: skip connections (concatenated input and the previous layer), residual inputs,
//   the noise embedding shared by all blocks' projections.
// - Scratch buffers named in an op's arguments are the caller's (sizes from the *Bytes helpers), so a training graph
//   can share them; the ones only valid inside the passes one op call returns are the context's (sharedScratch).
import { actConstant } from '../../shaders/activation.ts';
import { ceilDiv, type Dispatch, type GpuContext } from '../gpu.ts';
import {
  CHANNEL_SUM_UNIFORM,
  CHANNEL_SUM_WGSL,
  channelSumDirectWgsl,
  CONV_DW_UNIFORM,
  CONV_DX_UNIFORM,
  CONV2D_DW_WGSL,
  CONV2D_DX_WGSL,
  convDwDirectWgsl,
  DW_DIRECT_UNIFORM,
  FLIP_WEIGHTS_UNIFORM,
  FLIP_WEIGHTS_WGSL,
  SPLIT_REDUCE_UNIFORM,
  SPLIT_REDUCE_WGSL,
} from '../../shaders/conv2d_backward.ts';
import {
  convDwStridedWgsl,
  convDxDirectWgsl,
  DW_STRIDED_UNIFORM,
  DX_DIRECT_UNIFORM,
  DX_WEIGHTS_UNIFORM,
  dxTaps,
  dxWeightsWgsl,
  type DxDirectShape,
  type StridedMode,
} from '../../shaders/conv2d_backward_direct.ts';
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
import { conv2d, convNormSpec, convOutSize, convRanges, convShape, recordConv, type ConvSpec } from './conv2d.ts';
import { addInto } from './elementwise.ts';
import { groupNormApply, groupNormBackward, groupNormBackwardScratchBytes } from './groupnorm.ts';
import type { BackwardEnv, PlanOpFamily, PlanOpOf } from './plan-ops.ts';

// ---------------------------------------------------------------------------------------------------------------- conv

export type ConvBackwardSpec = Omit<ConvSpec, 'hasRes'>;

/**
 * What a conv's parameter gradients are computed from: the parameters, the forward's inputs (a, the concatenated b,
 * GroupNorm's saved stats where it normalised), the output's gradient dOut, and the gradients' buffer they go to.
 */
interface ConvGradInputs {
  params: GPUBuffer;
  a: GPUBuffer;
  b?: GPUBuffer;
  stats?: GPUBuffer;
  dOut: GPUBuffer;
  grads: GPUBuffer;
}

function checkConv(spec: ConvBackwardSpec): void {
  const L = spec.label ?? 'conv';
  for (const k of ['B', 'C1', 'C2', 'Hin', 'Win', 'Cout'] as const) {
    need(
      Number.isInteger(spec[k]) && spec[k] >= (k === 'C2' ? 0 : 1),
      `${L}: ${k} must be a ${k === 'C2' ? 'non-negative' : 'positive'} integer, got ${spec[k]}`,
    );
  }
  need(spec.ks === 1 || spec.ks === 3, `${L}: kernel size must be 1 or 3, got ${spec.ks}`);
  need(spec.stride === 1 || spec.stride === 2, `${L}: stride must be 1 or 2, got ${spec.stride}`);
  const norm = spec.norm ?? 0;
  if (norm) {
    const G = spec.groups ?? 1;
    need((spec.C1 + spec.C2) % G === 0, `${L}: ${spec.C1 + spec.C2} channels do not divide into ${G} groups`);
  }
}

/**
 * dIn of a conv: the gradient w.r.t. the conv's input as stored (before the fused upsample: summed over each 2x2
 * block), split like the input: channels [0, C1) into dA [B, C1, Hin, Win], [C1, C1+C2) into dB [B, C2, Hin, Win].
 * When the forward normalised its input (spec.norm), this is the gradient w.r.t. the normalised(+activated) input: pass
 * it to groupNormBackward as dY. The fused GroupNorm, bias, embedding and residual are not handled here.
 */
export async function conv2dBackwardInput(
  ctx: GpuContext,
  spec: ConvBackwardSpec,
  bufs: { params: GPUBuffer; dOut: GPUBuffer; dA: GPUBuffer; dB?: GPUBuffer },
  opts: BackwardOptions = {},
): Promise<Dispatch[]> {
  checkConv(spec);
  const L = spec.label ?? 'conv';
  need(spec.C2 === 0 || bufs.dB, `${L}: C2 > 0 needs a dB buffer for the concatenated input's gradient`);
  noAlias(L, { dA: bufs.dA, dB: bufs.dB }, { params: bufs.params, dOut: bufs.dOut });
  if (ctx.options.convKernel === 'direct') {
    if (spec.stride === 1 && !spec.upsample) return directInputGradient(ctx, spec, bufs, opts);
    const mode = stridedMode(spec);
    if (mode) return stridedInputGradient(ctx, spec, mode, bufs, opts);
  }
  const pipeline = await ctx.pipeline(CONV2D_DX_WGSL, { label: 'conv2d_dx' });
  const u = CONV_DX_UNIFORM.pack(
    {
      ...convShape(spec),
      wOff: spec.wOff,
      ks: spec.ks,
      stride: spec.stride,
      upsample: spec.upsample ? 1 : 0,
      accumulate: opts.accumulate ? 1 : 0,
    },
    L,
  );
  const bindGroup = ctx.bind(
    pipeline,
    [bufs.params, bufs.dOut, bufs.dA, bufs.dB ?? writeDummy(ctx), ctx.uniform(u, `${L}.dx.u`)],
    `${L}.dx`,
  );
  const workgroups: [number, number, number] = [
    ceilDiv(spec.Hin * spec.Win, 64),
    ceilDiv(spec.C1 + spec.C2, 64),
    spec.B,
  ];
  checkWorkgroups(ctx, workgroups, L);
  return [{ pipeline, bindGroup, workgroups, label: `${L}.dx` }];
}

/**
 * The input gradient of a stride-1 conv where the context runs the direct conv kernel (software devices): flip and
 * transpose the weights into a scratch buffer (every step: Adam moves them), then one direct conv of dOut per part of
 * the input (dA's channels, dB's), through a scratch and an add where the gradient accumulates. Run them together.
 */
async function directInputGradient(
  ctx: GpuContext,
  spec: ConvBackwardSpec,
  bufs: { params: GPUBuffer; dOut: GPUBuffer; dA: GPUBuffer; dB?: GPUBuffer },
  opts: BackwardOptions,
): Promise<Dispatch[]> {
  const L = spec.label ?? 'conv';
  const Cin = spec.C1 + spec.C2;
  const KK = spec.ks * spec.ks;
  const nW = spec.Cout * Cin * KK;
  const wT = sharedScratch(ctx, 'conv2d_dx.flipped_weights', nW * 4);
  const flip = await ctx.pipeline(FLIP_WEIGHTS_WGSL, { label: 'conv2d_dx_flip' });
  const chain: Dispatch[] = [
    {
      pipeline: flip,
      bindGroup: ctx.bind(
        flip,
        [
          bufs.params,
          wT,
          ctx.uniform(FLIP_WEIGHTS_UNIFORM.pack({ Cout: spec.Cout, Cin, KK, wOff: spec.wOff }, L), `${L}.dx_flip.u`),
        ],
        `${L}.dx_flip`,
      ),
      workgroups: grid256(ctx, nW, L),
      label: `${L}.dx_flip`,
    },
  ];
  const HW = spec.Hin * spec.Win;
  const parts: [number, number, GPUBuffer][] = [[0, spec.C1, bufs.dA]];
  if (spec.C2) parts.push([spec.C1, spec.C2, bufs.dB!]);
  for (const [c0, C, dst] of parts) {
    const n = spec.B * C * HW;
    const out = opts.accumulate ? sharedScratch(ctx, 'conv2d_dx.partial', n * 4) : dst;
    chain.push(
      ...(await conv2d(
        ctx,
        {
          B: spec.B,
          C1: spec.Cout,
          C2: 0,
          Hin: spec.Hin,
          Win: spec.Win,
          Cout: C,
          ks: spec.ks,
          stride: 1,
          wOff: c0 * spec.Cout * KK,
          bOff: -1,
          label: `${L}.dx`,
        },
        { params: wT, a: bufs.dOut, out },
      )),
    );
    if (opts.accumulate) chain.push(await addInto(ctx, { n, label: `${L}.dx_add` }, { src: out, dst }));
  }
  return chain;
}

/**
 * The weight gradient's S partial sums (slices of n weights in `partial`) added into grads[wOff ...] by
 * SPLIT_REDUCE_WGSL: after the split GEMM kernel and after the banded direct kernels.
 */
async function splitReduce(
  ctx: GpuContext,
  L: string,
  r: { n: number; S: number; wOff: number; accumulate: boolean },
  partial: GPUBuffer,
  grads: GPUBuffer,
): Promise<Dispatch> {
  const rp = await ctx.pipeline(SPLIT_REDUCE_WGSL, { label: 'split_reduce' });
  const ru = SPLIT_REDUCE_UNIFORM.pack({ n: r.n, S: r.S, dstOff: r.wOff, accumulate: r.accumulate ? 1 : 0 }, L);
  return {
    pipeline: rp,
    bindGroup: ctx.bind(rp, [partial, grads, ctx.uniform(ru, `${L}.dw_reduce.u`)], `${L}.dw_reduce`),
    workgroups: grid256(ctx, r.n, L),
    label: `${L}.dw_reduce`,
  };
}

/**
 * The banded direct weight gradients (directWeightGradient, stridedWeightGradient) on software devices: the
 * `height` rows that the kernel walks are cut into bands of whole steps of RY rows, enough bands that the
 * B * bands * perImage invocations keep the device's threads busy (at least 512); each band writes its sums to its
 * slice of a shared scratch, then splitReduce adds the slices into the gradient. Two dispatches, run together (the
 * shared scratch is only valid between them). `uniform` packs the kernel's uniform for the bands' rows and count.
 */
async function bandedWeightGradient(
  ctx: GpuContext,
  spec: ConvBackwardSpec,
  bufs: Pick<ConvGradInputs, 'a' | 'b' | 'dOut' | 'grads'>,
  opts: BackwardOptions,
  k: {
    code: string;
    label: string;
    perImage: number;
    height: number;
    RY: number;
    uniform: (rows: number, bands: number) => ArrayBuffer;
  },
): Promise<Dispatch[]> {
  const L = spec.label ?? 'conv';
  const n = spec.Cout * (spec.C1 + spec.C2) * spec.ks * spec.ks;
  const steps = ceilDiv(k.height, k.RY);
  const chunks = Math.max(1, Math.min(steps, Math.ceil(512 / (spec.B * k.perImage))));
  const rows = ceilDiv(steps, chunks) * k.RY;
  const bands = ceilDiv(k.height, rows);
  const S = spec.B * bands;
  const partial = sharedScratch(ctx, 'conv2d_dw.partials', S * n * 4);
  noAlias(L, { partial, grads: bufs.grads }, { a: bufs.a, b: bufs.b, dOut: bufs.dOut });
  const pipeline = await ctx.pipeline(k.code, { label: k.label });
  const bindGroup = ctx.bind(
    pipeline,
    [bufs.a, bufs.b ?? dummy(ctx), bufs.dOut, partial, ctx.uniform(k.uniform(rows, bands), `${L}.dw.u`)],
    `${L}.dw`,
  );
  return [
    { pipeline, bindGroup, workgroups: grid(ctx, S * k.perImage, 64, L), label: `${L}.dw` },
    await splitReduce(ctx, L, { n, S, wOff: spec.wOff, accumulate: !!opts.accumulate }, partial, bufs.grads),
  ];
}

/**
 * The weight gradient of a stride-1 conv on a plain input where the context runs the direct conv kernel (software
 * devices): bands of rows per invocation into per-band slices of a scratch, then the slices summed into the
 * gradient (convDwDirectWgsl + SPLIT_REDUCE_WGSL).
 */
async function directWeightGradient(
  ctx: GpuContext,
  spec: ConvBackwardSpec,
  bufs: Pick<ConvGradInputs, 'a' | 'b' | 'dOut' | 'grads'>,
  opts: BackwardOptions,
): Promise<Dispatch[]> {
  const { B, C1, C2, Cout } = spec;
  // one invocation: 4 output channels x one input channel x a band of input rows
  return bandedWeightGradient(ctx, spec, bufs, opts, {
    code: convDwDirectWgsl(spec.ks),
    label: 'conv2d_dw_direct',
    perImage: (C1 + C2) * ceilDiv(Cout, 4),
    height: spec.Hin,
    RY: 1,
    uniform: (rows, bands) =>
      DW_DIRECT_UNIFORM.pack({ B, C1, C2, H: spec.Hin, W: spec.Win, Cout, rows, chunks: bands }, spec.label ?? 'conv'),
  });
}

/** Which direct strided kernel a conv's backward uses on a software device: stride 2, or upsampling (not both). */
function stridedMode(spec: ConvBackwardSpec): StridedMode | null {
  if (spec.stride === 2 && !spec.upsample) return 'stride2';
  if (spec.stride === 1 && spec.upsample) return 'upsample';
  return null;
}

/**
 * The direct input-gradient kernel's block for one conv: RY x PX input pixels x RN input channels per invocation
 * (stride 2: 4 rows x 16 pixels x 4 channels, so each tap's weights serve a quarter of the 64 pixels; upsampling:
 * one row of 16 pixels x 16 channels, each of whose 16 effective taps serves all 16 pixels; 8 or 4 pixels on narrower
 * maps), WG invocations per workgroup (fewer on small maps), CC output channels of weights staged at a time
 * (8 KiB), vec4 reads of the output gradient and writes of the input gradient where the rows allow. Chosen on
 * lavapipe against the blocks bench/README.md lists ("Bigger blocks vs compile time").
 */
export function dxStridedBlock(spec: ConvBackwardSpec, mode: StridedMode): DxDirectShape {
  const Cin = spec.C1 + spec.C2;
  const [, Wout] = convOutSize(spec);
  const RY = mode === 'stride2' ? 4 : 1;
  const PX = spec.Win >= 16 ? 16 : spec.Win >= 8 ? 8 : 4;
  const RN = mode === 'stride2' || Cin <= 4 ? 4 : Cin <= 8 ? 8 : 16;
  const T = dxTaps(spec.ks, mode).length;
  const units = ceilDiv(spec.Hin, RY) * ceilDiv(spec.Win, PX);
  const WG = Math.min(64, Math.max(8, 2 ** Math.ceil(Math.log2(units))));
  const CC = Math.max(1, Math.floor(512 / (T * (RN / 4))));
  const vecG = Wout % 4 === 0 && PX % (mode === 'stride2' ? 8 : 2) === 0;
  const vecOut = spec.Win % 4 === 0 && PX % 4 === 0;
  return { ks: spec.ks, mode, RY, PX, RN, CC, WG, vecG, vecOut };
}

/**
 * The input gradient of a stride-2 or upsampled conv where the context runs the direct conv kernel (software devices):
 * the weights gathered per effective tap and transposed into a scratch (every step: Adam moves them), then the direct
 * kernel (shaders/conv2d_backward_direct.ts), which writes or adds dA / dB itself. Two dispatches, run together.
 */
async function stridedInputGradient(
  ctx: GpuContext,
  spec: ConvBackwardSpec,
  mode: StridedMode,
  bufs: { params: GPUBuffer; dOut: GPUBuffer; dA: GPUBuffer; dB?: GPUBuffer },
  opts: BackwardOptions,
): Promise<Dispatch[]> {
  const L = spec.label ?? 'conv';
  const Cin = spec.C1 + spec.C2;
  const shape = dxStridedBlock(spec, mode);
  const T = dxTaps(spec.ks, mode).length;
  const CinP = ceilDiv(Cin, shape.RN) * shape.RN;
  const nW = spec.Cout * T * CinP;
  const wT = sharedScratch(ctx, 'conv2d_dx.strided_weights', nW * 4);
  const prep = await ctx.pipeline(dxWeightsWgsl(spec.ks, mode), { label: `conv2d_dx_${mode}_weights` });
  const pipeline = await ctx.pipeline(convDxDirectWgsl(shape), { label: `conv2d_dx_${mode}_direct` });
  const u = DX_DIRECT_UNIFORM.pack({ ...convShape(spec), CinP, accumulate: opts.accumulate ? 1 : 0 }, L);
  const workgroups: [number, number, number] = [
    ceilDiv(ceilDiv(spec.Hin, shape.RY) * ceilDiv(spec.Win, shape.PX), shape.WG),
    ceilDiv(Cin, shape.RN),
    spec.B,
  ];
  checkWorkgroups(ctx, workgroups, L);
  return [
    {
      pipeline: prep,
      bindGroup: ctx.bind(
        prep,
        [
          bufs.params,
          wT,
          ctx.uniform(DX_WEIGHTS_UNIFORM.pack({ Cout: spec.Cout, Cin, CinP, wOff: spec.wOff }, L), `${L}.dx_weights.u`),
        ],
        `${L}.dx_weights`,
      ),
      workgroups: grid256(ctx, spec.Cout * CinP, L),
      label: `${L}.dx_weights`,
    },
    {
      pipeline,
      bindGroup: ctx.bind(
        pipeline,
        [wT, bufs.dOut, bufs.dA, bufs.dB ?? writeDummy(ctx), ctx.uniform(u, `${L}.dx.u`)],
        `${L}.dx`,
      ),
      workgroups,
      label: `${L}.dx`,
    },
  ];
}

/**
 * The weight gradient of a stride-2 or upsampled conv on a plain input where the context runs the direct conv kernel
 * (software devices): bands of output-gradient rows per invocation into per-band slices of a scratch, then the slices
 * summed into the gradient (convDwStridedWgsl + SPLIT_REDUCE_WGSL), as directWeightGradient for stride 1.
 * RC x RCI output x input channels per invocation: each step loads RC x RY vec4s of the output gradient and RCI x
 * (the step's input values) for RC x RCI x KS*KS x 4 x RY FMAs. Stride 2 reads 27 input values per input channel and
 * step, upsampling 12 (its columns come in pairs) against 2 vec4 rows of the output gradient, so stride 2 takes more
 * output channels (8 x 2) and upsampling more input channels (4 x 4); chosen on lavapipe against the blocks
 * bench/README.md lists ("Bigger blocks vs compile time").
 */
async function stridedWeightGradient(
  ctx: GpuContext,
  spec: ConvBackwardSpec,
  mode: StridedMode,
  bufs: Pick<ConvGradInputs, 'a' | 'b' | 'dOut' | 'grads'>,
  opts: BackwardOptions,
): Promise<Dispatch[]> {
  const [Hout, Wout] = convOutSize(spec);
  const { B, C1, C2, Cout } = spec;
  const RC = mode === 'stride2' && Cout > 4 ? 8 : 4;
  const RCI = mode === 'stride2' ? 2 : 4;
  const RY = mode === 'upsample' ? 2 : 1;
  const vecX = mode === 'stride2' && spec.Win % 4 === 0;
  return bandedWeightGradient(ctx, spec, bufs, opts, {
    code: convDwStridedWgsl({ ks: spec.ks, mode, RC, RCI, RY, vecG: Wout % 4 === 0, concat: C2 > 0, vecX }),
    label: `conv2d_dw_${mode}_direct`,
    perImage: ceilDiv(C1 + C2, RCI) * ceilDiv(Cout, RC),
    height: Hout,
    RY,
    uniform: (rows, bands) =>
      DW_STRIDED_UNIFORM.pack(
        { B, C1, C2, H: spec.Hin, W: spec.Win, Hout, Wout, Cout, rows, chunks: bands },
        spec.label ?? 'conv',
      ),
  });
}

/** How many reduction slices the weight gradient uses by default: enough workgroups to fill a GPU, slices of >= 1024. */
export function convWeightSplit(spec: ConvBackwardSpec): number {
  const [Hout, Wout] = convOutSize(spec);
  const R = spec.B * Hout * Wout;
  const tiles = ceilDiv((spec.C1 + spec.C2) * spec.ks * spec.ks, 64) * ceilDiv(spec.Cout, 64);
  const want = Math.ceil(256 / tiles);
  return Math.max(1, Math.min(want, Math.floor(R / 1024), 64));
}

/** Bytes of scratch the weight gradient needs with `split` slices (0 for one). */
export function convWeightScratchBytes(spec: ConvBackwardSpec, split = convWeightSplit(spec)): number {
  return split > 1 ? split * spec.Cout * (spec.C1 + spec.C2) * spec.ks * spec.ks * 4 : 0;
}

/**
 * dW of a conv into grads[wOff + co*K + k] (K = (C1+C2)*ks*ks, the torch [Cout, Cin, ks, ks] layout):
 * sum over batch and output pixels of dOut times the forward's input patch (GroupNorm/Swish, upsample and
 * concatenation recomputed from a, b and the saved stats). With split > 1 the reduction is cut in slices summed
 * through `scratch` (convWeightScratchBytes), two dispatches. With `xn` (B * (C1+C2) * Hin * Win floats) and a
 * normalised input, the normalisation is first materialised into xn (groupNormApply), one more dispatch.
 */
export async function conv2dBackwardWeight(
  ctx: GpuContext,
  spec: ConvBackwardSpec,
  bufs: ConvGradInputs & { scratch?: GPUBuffer; xn?: GPUBuffer },
  opts: BackwardOptions & { split?: number } = {},
): Promise<Dispatch[]> {
  checkConv(spec);
  const L = spec.label ?? 'conv';
  const norm = spec.norm ?? 0;
  if (norm && bufs.xn) {
    // normalise once into xn, then the plain weight gradient over it
    need(bufs.stats, `${L}: GroupNorm needs a stats buffer`);
    const Cin = spec.C1 + spec.C2;
    need(
      bufs.xn.size >= spec.B * Cin * spec.Hin * spec.Win * 4,
      `${L}: xn of ${bufs.xn.size} bytes, needs ${spec.B * Cin * spec.Hin * spec.Win * 4}`,
    );
    const pre = await groupNormApply(ctx, convNormSpec(spec, L), {
      params: bufs.params,
      a: bufs.a,
      b: bufs.b,
      stats: bufs.stats!,
      out: bufs.xn,
    });
    const plain: ConvBackwardSpec = { ...spec, C1: Cin, C2: 0, norm: 0 };
    return [
      pre,
      ...(await conv2dBackwardWeight(
        ctx,
        plain,
        { params: bufs.params, a: bufs.xn, dOut: bufs.dOut, grads: bufs.grads, scratch: bufs.scratch },
        opts,
      )),
    ];
  }
  need(spec.C2 === 0 || bufs.b, `${L}: C2 > 0 needs input B`);
  need(!norm || bufs.stats, `${L}: GroupNorm needs a stats buffer`);
  if (ctx.options.convKernel === 'direct' && !norm) {
    if (spec.stride === 1 && !spec.upsample && spec.Win % 4 === 0) return directWeightGradient(ctx, spec, bufs, opts);
    const mode = stridedMode(spec);
    if (mode) return stridedWeightGradient(ctx, spec, mode, bufs, opts);
  }
  const [Hout, Wout] = convOutSize(spec);
  const K = (spec.C1 + spec.C2) * spec.ks * spec.ks;
  const R = spec.B * Hout * Wout;
  need(
    opts.split === undefined || (Number.isInteger(opts.split) && opts.split >= 1),
    `${L}: split must be a positive integer, got ${opts.split}`,
  );
  const split = Math.max(1, Math.min(opts.split ?? 1, Math.ceil(R / 16)));
  if (split > 1) {
    need(bufs.scratch, `${L}: a split weight gradient needs a scratch buffer`);
    need(
      bufs.scratch!.size >= convWeightScratchBytes(spec, split),
      `${L}: scratch of ${bufs.scratch!.size} bytes, needs ${convWeightScratchBytes(spec, split)}`,
    );
  }
  const chunk = Math.ceil(Math.ceil(R / split) / 16) * 16;
  const S = Math.ceil(R / chunk);
  noAlias(
    L,
    { grads: bufs.grads, scratch: S > 1 ? bufs.scratch : undefined },
    { params: bufs.params, a: bufs.a, b: bufs.b, stats: bufs.stats, dOut: bufs.dOut },
  );
  const pipeline = await ctx.pipeline(CONV2D_DW_WGSL, { label: 'conv2d_dw', constants: actConstant(spec.act) });
  const u = CONV_DW_UNIFORM.pack(
    {
      ...convShape(spec),
      G: spec.groups ?? 1,
      wOff: spec.wOff,
      gOff: spec.gammaOff ?? 0,
      betaOff: spec.betaOff ?? 0,
      statsOff: spec.statsOff ?? 0,
      chunk,
      ks: spec.ks,
      stride: spec.stride,
      upsample: spec.upsample ? 1 : 0,
      norm,
      split: S > 1 ? 1 : 0,
      accumulate: opts.accumulate ? 1 : 0,
    },
    L,
  );
  const d = dummy(ctx);
  const target = S > 1 ? bufs.scratch! : bufs.grads;
  const bindGroup = ctx.bind(
    pipeline,
    [bufs.params, bufs.a, bufs.b ?? d, bufs.stats ?? d, bufs.dOut, target, ctx.uniform(u, `${L}.dw.u`)],
    `${L}.dw`,
  );
  const workgroups: [number, number, number] = [ceilDiv(K, 64), ceilDiv(spec.Cout, 64), S];
  checkWorkgroups(ctx, workgroups, L);
  const out: Dispatch[] = [{ pipeline, bindGroup, workgroups, label: `${L}.dw` }];
  if (S > 1) {
    const r = { n: spec.Cout * K, S, wOff: spec.wOff, accumulate: !!opts.accumulate };
    out.push(await splitReduce(ctx, L, r, bufs.scratch!, bufs.grads));
  }
  return out;
}

/**
 * Per-channel sums of dOut [B, C, HW]: the bias gradient grads[bOff + c] = sum_{b, hw} dOut (bOff >= 0) and the
 * embedding gradient dEmb[embOff + b*C + c] = sum_hw dOut (embOff >= 0; the embedding add's backward).
 */
export async function channelSumBackward(
  ctx: GpuContext,
  spec: { B: number; C: number; HW: number; bOff: number; embOff?: number; label?: string },
  bufs: { dOut: GPUBuffer; grads?: GPUBuffer; dEmb?: GPUBuffer },
  opts: BackwardOptions = {},
): Promise<Dispatch> {
  const L = spec.label ?? 'bias';
  const hasBias = spec.bOff >= 0;
  const hasEmb = spec.embOff !== undefined && spec.embOff >= 0;
  need(hasBias || hasEmb, `${L}: neither a bias nor an embedding gradient asked for`);
  need(!hasBias || bufs.grads, `${L}: a bias gradient needs the grads buffer`);
  need(!hasEmb || bufs.dEmb, `${L}: an embedding gradient needs a dEmb buffer`);
  noAlias(L, { grads: hasBias ? bufs.grads : undefined, dEmb: hasEmb ? bufs.dEmb : undefined }, { dOut: bufs.dOut });
  // software devices: one invocation per channel instead of a workgroup's tree reduction (see channelSumDirectWgsl)
  const direct = ctx.options.convKernel === 'direct';
  const vec = spec.HW % 4 === 0;
  const pipeline = direct
    ? await ctx.pipeline(channelSumDirectWgsl(vec), { label: 'channel_sum_direct' })
    : await ctx.pipeline(CHANNEL_SUM_WGSL, { label: 'channel_sum' });
  const u = CHANNEL_SUM_UNIFORM.pack(
    {
      B: spec.B,
      C: spec.C,
      HW: spec.HW,
      bOff: Math.max(spec.bOff, 0),
      embOff: hasEmb ? spec.embOff! : 0,
      hasBias: hasBias ? 1 : 0,
      hasEmb: hasEmb ? 1 : 0,
      accumulate: opts.accumulate ? 1 : 0,
    },
    L,
  );
  const bindGroup = ctx.bind(
    pipeline,
    [bufs.dOut, bufs.grads ?? writeDummy(ctx, 0), bufs.dEmb ?? writeDummy(ctx, 1), ctx.uniform(u, `${L}.bias.u`)],
    `${L}.bias`,
  );
  const workgroups: [number] = [direct ? ceilDiv(spec.C, 8) : spec.C];
  checkWorkgroups(ctx, workgroups, L);
  return { pipeline, bindGroup, workgroups, label: `${L}.bias` };
}

// ------------------------------------------------------------------------------------------- the whole fused conv

/** Scratch the fused conv backward needs (bytes; 0 where a part is not used). */
export function conv2dBackwardScratchBytes(
  spec: ConvBackwardSpec,
  split = convWeightSplit(spec),
): { dYA: number; dYB: number; gn: number; dw: number; xn: number } {
  const norm = spec.norm ?? 0;
  const hw = spec.Hin * spec.Win;
  return {
    xn: norm ? spec.B * (spec.C1 + spec.C2) * hw * 4 : 0,
    dYA: norm ? spec.B * spec.C1 * hw * 4 : 0,
    dYB: norm && spec.C2 ? spec.B * spec.C2 * hw * 4 : 0,
    gn: norm ? groupNormBackwardScratchBytes({ B: spec.B, C1: spec.C1, C2: spec.C2, groups: spec.groups ?? 1 }) : 0,
    dw: convWeightScratchBytes(spec, split),
  };
}

/**
 * The complete backward of one fused conv2d (conv2d.ts conv2d with the same spec), as dispatches in order:
 *   bias / embedding gradients (channelSumBackward; dEmb at embOff when the forward added an embedding),
 *   the weight gradient (conv2dBackwardWeight, split through scratch.dw when split > 1; with scratch.xn a normalised
 *   input is materialised once there instead of renormalised per kernel tap),
 *   the input gradient (conv2dBackwardInput; through scratch.dYA/dYB and groupNormBackward when normalised),
 * dA / dB (=|+=) dL/dA, dL/dB per `accumulate`; parameter gradients overwrite (or add with accumulateParams).
 * The residual's gradient is dOut itself (nothing to compute: pass dOut on, or addInto an existing gradient).
 * Skip dA (inputGrad false) for the first conv, whose input is data.
 */
export async function conv2dBackward(
  ctx: GpuContext,
  spec: ConvBackwardSpec,
  bufs: ConvGradInputs & {
    dEmb?: GPUBuffer;
    dA?: GPUBuffer;
    dB?: GPUBuffer;
    scratch?: { dYA?: GPUBuffer; dYB?: GPUBuffer; gn?: GPUBuffer; dw?: GPUBuffer; xn?: GPUBuffer };
  },
  opts: BackwardOptions & { accumulateParams?: boolean; split?: number; inputGrad?: boolean } = {},
): Promise<Dispatch[]> {
  checkConv(spec);
  const L = spec.label ?? 'conv';
  const norm = spec.norm ?? 0;
  const [Hout, Wout] = convOutSize(spec);
  const out: Dispatch[] = [];
  const hasEmb = spec.embOff !== undefined && spec.embOff >= 0;
  if (spec.bOff >= 0 || hasEmb) {
    out.push(
      await channelSumBackward(
        ctx,
        { B: spec.B, C: spec.Cout, HW: Hout * Wout, bOff: spec.bOff, embOff: spec.embOff, label: L },
        { dOut: bufs.dOut, grads: bufs.grads, dEmb: bufs.dEmb },
        { accumulate: opts.accumulateParams },
      ),
    );
  }
  const split = opts.split ?? (bufs.scratch?.dw ? convWeightSplit(spec) : 1);
  out.push(
    ...(await conv2dBackwardWeight(
      ctx,
      spec,
      {
        params: bufs.params,
        a: bufs.a,
        b: bufs.b,
        stats: bufs.stats,
        dOut: bufs.dOut,
        grads: bufs.grads,
        scratch: bufs.scratch?.dw,
        xn: bufs.scratch?.xn,
      },
      { accumulate: opts.accumulateParams, split },
    )),
  );
  if (opts.inputGrad === false) return out;
  need(bufs.dA, `${L}: no dA buffer for the input gradient (pass inputGrad: false to skip it)`);
  if (!norm) {
    out.push(
      ...(await conv2dBackwardInput(
        ctx,
        spec,
        { params: bufs.params, dOut: bufs.dOut, dA: bufs.dA!, dB: bufs.dB },
        opts,
      )),
    );
    return out;
  }
  const s = bufs.scratch;
  need(
    s?.dYA && s.gn && (spec.C2 === 0 || s.dYB),
    `${L}: a normalised conv's backward needs scratch dYA${spec.C2 ? ', dYB' : ''} and gn`,
  );
  out.push(
    ...(await conv2dBackwardInput(ctx, spec, { params: bufs.params, dOut: bufs.dOut, dA: s!.dYA!, dB: s!.dYB })),
  );
  out.push(
    ...(await groupNormBackward(
      ctx,
      convNormSpec(spec, L),
      {
        params: bufs.params,
        a: bufs.a,
        b: bufs.b,
        dYA: s!.dYA!,
        dYB: s!.dYB,
        stats: bufs.stats!,
        grads: bufs.grads,
        scratch: s!.gn!,
        dA: bufs.dA!,
        dB: bufs.dB,
      },
      { accumulate: opts.accumulate, accumulateParams: opts.accumulateParams },
    )),
  );
  return out;
}

/**
 * A plan's conv op backward (PLAN_OPS.conv.backward): conv2dBackward into the gradients of its inputs (none for the
 * network's input, which is data), then the residual's gradient, which is dOut itself, added into the residual
 * input's.
 */
async function recordConvBackward(ctx: GpuContext, op: PlanOpOf<'conv'>, env: BackwardEnv): Promise<Dispatch[]> {
  const { hasRes: _ignored, ...spec } = op.spec;
  const inputGrad = !env.isInput(op.a);
  const out = await conv2dBackward(
    ctx,
    spec,
    {
      params: env.params,
      a: env.buf(op.a),
      b: op.b ? env.buf(op.b) : undefined,
      stats: spec.norm ? env.stats : undefined,
      dOut: env.grad(op.out),
      grads: env.grads,
      dEmb: spec.embOff !== undefined && spec.embOff >= 0 ? env.dEmb : undefined,
      dA: inputGrad ? env.grad(op.a) : undefined,
      dB: inputGrad && op.b ? env.grad(op.b) : undefined,
      scratch: env.scratch,
    },
    { accumulate: true, inputGrad },
  );
  if (op.res) {
    const n = op.res.bytes / 4;
    out.push(
      await addInto(ctx, { n, label: `${op.label}.residual` }, { src: env.grad(op.out), dst: env.grad(op.res) }),
    );
  }
  return out;
}

/** The conv's entry in the plan's op table (engine/ops/plan-ops.ts): the forward is conv2d.ts's. */
export const conv2dOp: PlanOpFamily<'conv'> = {
  forward: recordConv,
  backward: recordConvBackward,
  paramRanges: (op) => convRanges(op.spec),
  scratchBytes: (op) => conv2dBackwardScratchBytes(op.spec),
};
