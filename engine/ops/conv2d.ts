// conv2d's forward host code: the fused conv (GroupNorm(+Swish) on the input load; bias, embedding and residual on
// the write) through one of four kernels (direct, tiled, f16, mma/mma3) and split-K, with each kernel's tile or block
// rule and the device checks for the mixed-precision ones. Every choice comes from the context's options
// (ctx.options, engine/options.ts). The backward is in conv2d-backward.ts.
import { actConstant, type Activation } from '../../shaders/activation.ts';
import { ceilDiv, type Dispatch, type GpuContext } from '../gpu.ts';
import {
  CONV_UNIFORM,
  CONV2D_SPLITK_REDUCE_WGSL,
  SPLITK_REDUCE_UNIFORM,
  TILED_TK,
  conv2dDirectWgsl,
  conv2dTiledWgsl,
  type TiledShape,
} from '../../shaders/conv2d.ts';
import type { CONV_SHAPE_FIELDS } from '../../shaders/conv2d_common.ts';
import {
  conv2dMmaWgsl,
  MMA_TILE,
  mmaTile,
  mmaTileBytes,
  mmaWorkgroupSize,
  subgroupMatrixProbeWgsl,
  type SubgroupMatrixSyntax,
} from '../../shaders/conv2d_mma.ts';
import type { EngineOptions } from '../options.ts';
import { checkWorkgroups, dummy, grid, sharedScratch } from './common.ts';
import { type GroupNormBackwardSpec, groupNormApply } from './groupnorm.ts';
import type { ForwardEnv, PlanOpOf } from './plan-ops.ts';

export interface ConvSpec {
  B: number;
  /** channels read from input A, and from input B (the skip concatenation; 0 when there is no B) */
  C1: number;
  C2: number;
  /** the stored input's size (before any fused upsampling) */
  Hin: number;
  Win: number;
  Cout: number;
  ks: 1 | 3;
  stride: 1 | 2;
  upsample?: boolean;
  /** 0: none, 1: GroupNorm, 2: GroupNorm + the activation, applied to the input as it is read */
  norm?: 0 | 1 | 2;
  /** the activation of norm 2 (default Swish, the reference's) */
  act?: Activation;
  groups?: number;
  statsOff?: number;
  gammaOff?: number;
  betaOff?: number;
  /** offsets of the weight [Cout, C1+C2, ks, ks] and bias [Cout] in the params buffer (bias -1: none) */
  wOff: number;
  bOff: number;
  /** offset of the [B, Cout] embedding added per channel (-1 or absent: none) */
  embOff?: number;
  hasRes?: boolean;
  label?: string;
}

/** The GroupNorm (+ activation) a normalised conv applies to its input, as the GroupNorm kernels take it. */
export function convNormSpec(spec: ConvSpec, label: string): GroupNormBackwardSpec {
  return {
    B: spec.B,
    C1: spec.C1,
    C2: spec.C2,
    HW: spec.Hin * spec.Win,
    groups: spec.groups ?? 1,
    statsOff: spec.statsOff ?? 0,
    gammaOff: spec.gammaOff ?? 0,
    betaOff: spec.betaOff ?? 0,
    withAct: spec.norm === 2,
    act: spec.act,
    label,
  };
}

/**
 * The conv shape that every conv kernel's uniform starts with (shaders/conv2d_common.ts CONV_SHAPE_FIELDS): batch,
 * input channels of A and B, the stored input's size, the output's size (convOutSize) and channels.
 */
export function convShape(
  spec: Pick<ConvSpec, 'B' | 'C1' | 'C2' | 'Hin' | 'Win' | 'Cout' | 'ks' | 'stride' | 'upsample'>,
): Record<keyof typeof CONV_SHAPE_FIELDS, number> {
  const [Hout, Wout] = convOutSize(spec);
  const { B, C1, C2, Hin, Win, Cout } = spec;
  return { B, C1, C2, Hin, Win, Hout, Wout, Cout };
}

export function convOutSize(spec: Pick<ConvSpec, 'Hin' | 'Win' | 'ks' | 'stride' | 'upsample'>): [number, number] {
  const h = spec.upsample ? 2 * spec.Hin : spec.Hin;
  const w = spec.upsample ? 2 * spec.Win : spec.Win;
  const pad = spec.ks === 3 ? 1 : 0;
  return [Math.floor((h + 2 * pad - spec.ks) / spec.stride) + 1, Math.floor((w + 2 * pad - spec.ks) / spec.stride) + 1];
}

/**
 * The fused conv (the plan's conv op): out = conv(f(cat(a, b))) + bias + emb + res, f = GroupNorm(+ the activation)
 * when spec.norm, through the kernel the context's options pick (convKernel), split over the reduction (split-K)
 * where the GEMM kernels would leave the device idle. One dispatch, or two with split-K (run them together).
 */
export async function conv2d(
  ctx: GpuContext,
  spec: ConvSpec,
  bufs: {
    params: GPUBuffer;
    a: GPUBuffer;
    b?: GPUBuffer;
    stats?: GPUBuffer;
    emb?: GPUBuffer;
    res?: GPUBuffer;
    out: GPUBuffer;
  },
): Promise<Dispatch[]> {
  const [Hout, Wout] = convOutSize(spec);
  const norm = spec.norm ?? 0;
  const G = spec.groups ?? 1;
  if (norm && (spec.C1 + spec.C2) % G !== 0)
    throw new Error(`${spec.label}: ${spec.C1 + spec.C2} channels do not divide into ${G} groups`);
  if (spec.C2 > 0 && !bufs.b) throw new Error(`${spec.label}: C2 > 0 needs input B`);
  if (norm && !bufs.stats) throw new Error(`${spec.label}: GroupNorm needs a stats buffer`);
  const hasEmb = spec.embOff !== undefined && spec.embOff >= 0;
  if (hasEmb && !bufs.emb) throw new Error(`${spec.label}: embedding offset without an embedding buffer`);
  if (spec.hasRes && !bufs.res) throw new Error(`${spec.label}: residual flag without a residual buffer`);
  const { pipeline, workgroups, split } = await convKernel(ctx, spec, Hout, Wout);
  const u = CONV_UNIFORM.pack(
    {
      ...convShape(spec),
      G,
      wOff: spec.wOff,
      bOff: Math.max(spec.bOff, 0),
      gOff: spec.gammaOff ?? 0,
      betaOff: spec.betaOff ?? 0,
      embOff: hasEmb ? spec.embOff! : 0,
      statsOff: spec.statsOff ?? 0,
      hasBias: spec.bOff >= 0 ? 1 : 0,
      kChunk: split?.kChunk ?? 0,
      hasEmb: hasEmb ? 1 : 0,
      hasRes: spec.hasRes ? 1 : 0,
    },
    spec.label,
  );
  const d = dummy(ctx);
  // with split-K the conv writes raw partial sums to the scratch buffer: its epilogue inputs are left unbound
  const epilogue = split ? [d, d, split.parts] : [bufs.emb ?? d, bufs.res ?? d, bufs.out];
  const bindGroup = ctx.bind(
    pipeline,
    [bufs.params, bufs.a, bufs.b ?? d, bufs.stats ?? d, ...epilogue, ctx.uniform(u, `${spec.label}.u`)],
    spec.label,
  );
  checkWorkgroups(ctx, workgroups, spec.label);
  const conv: Dispatch = { pipeline, bindGroup, workgroups, label: spec.label };
  // with split-K, the reduction follows at once: the shared scratch is only valid between the two passes
  return split ? [conv, await splitKReduce(ctx, spec, [Hout, Wout], split, bufs)] : [conv];
}

/**
 * The pipeline and grid of one conv with the context's kernel (EngineOptions.convKernel): the direct kernel's block,
 * or the GEMM kernels' tile, and whether split-K cuts the reduction into chunks (S partial sums in a shared scratch,
 * kChunk reduction indices each).
 */
async function convKernel(
  ctx: GpuContext,
  spec: ConvSpec,
  Hout: number,
  Wout: number,
): Promise<{
  pipeline: GPUComputePipeline;
  workgroups: [number, number, number];
  split: { S: number; kChunk: number; parts: GPUBuffer } | null;
}> {
  const o = ctx.options;
  const kernel = o.convKernel;
  const norm = spec.norm ?? 0;
  if (kernel === 'direct') {
    const { PX, RN, CC, WG } = directBlock(spec.ks, Hout, Wout, spec.Cout, o.directBlock);
    const vec =
      spec.stride === 1 && !spec.upsample && PX % 4 === 0 && spec.Win % 4 === 0 && o.directBlock.vec !== false;
    // 1x1 convs always have the second input's loop (empty without one; a 1x1 body is short to compile), so the
    // U-Net's 1x1 convs with and without a skip input share pipelines; a 3x3 body is long, so there only where used
    const concat = spec.C2 > 0 || spec.ks === 1;
    const { ks, stride } = spec;
    const code = conv2dDirectWgsl({ ks, stride, upsample: !!spec.upsample, PX, RN, CC, WG, concat, vec });
    // whether the embedding and the residual are added is in the uniform (hasEmb, hasRes), so convs share pipelines
    const pipeline = await ctx.pipeline(code, {
      label: 'conv2d_direct',
      constants: { NORM: norm, ...actConstant(spec.act) },
    });
    return {
      pipeline,
      workgroups: [ceilDiv(Hout * ceilDiv(Wout, PX), WG), ceilDiv(spec.Cout, RN), spec.B],
      split: null,
    };
  }
  const hasEmb = spec.embOff !== undefined && spec.embOff >= 0;
  const constants: Record<string, number> = {
    KS: spec.ks,
    STRIDE: spec.stride,
    UPSAMPLE: spec.upsample ? 1 : 0,
    NORM: norm,
    HAS_EMB: hasEmb ? 1 : 0,
    HAS_RES: spec.hasRes ? 1 : 0,
    ...actConstant(spec.act),
  };
  // the GEMM kernels' output tile
  const mmaOpts =
    kernel === 'mma' || kernel === 'mma3'
      ? {
          ...(await requireMma(ctx, kernel)),
          split: kernel === 'mma3',
          maxWorkgroupBytes: ctx.limits.maxComputeWorkgroupStorageSize,
          subgroups: o.mma.subgroups,
          pad: o.mma.pad,
          tk: o.mma.tk,
          batched: o.batchLoads,
        }
      : null;
  const mma = mmaOpts ? { ...mmaOpts, ...mmaShape(Hout * Wout, spec.Cout, mmaOpts, o.mma) } : null;
  const tiled = kernel === 'tiled' ? tiledShape(Hout * Wout, spec.Cout, o.tiledTile) : null;
  const tile: { TM: number; TN: number } = tiled ?? mma ?? MMA_TILE;
  // split-K's chunks are whole k-steps of the kernel
  const tk = tiled ? TILED_TK : mma ? (mma.tk ?? 32) : MMA_TILE.TK;
  const wgs = ceilDiv(Hout * Wout, tile.TM) * ceilDiv(spec.Cout, tile.TN) * spec.B;
  const outBytes = spec.B * spec.Cout * Hout * Wout * 4;
  const K = (spec.C1 + spec.C2) * spec.ks * spec.ks;
  const { S, kChunk } = splitK(o, wgs, K, tk, Math.floor(ctx.limits.maxStorageBufferBindingSize / outBytes));
  const split = S > 1 ? { S, kChunk, parts: scratch(ctx, S * outBytes) } : null;
  if (split) constants.SPLIT_K = 1;
  const code = tiled
    ? conv2dTiledWgsl(tiled, o.tiledPrefetch, o.batchLoads)
    : conv2dMmaWgsl({ ...(mma ?? requireF16(ctx)), prefetch: o.mma.prefetch, batched: o.batchLoads });
  const label = tiled
    ? `conv2d_tiled_${tile.TM}x${tile.TN}`
    : mma
      ? `conv2d_${kernel}_${mma.TM}x${mma.TN}`
      : 'conv2d_f16';
  const pipeline = await ctx.pipeline(code, { label, constants });
  const workgroups: [number, number, number] = [
    ceilDiv(Hout * Wout, tile.TM),
    ceilDiv(spec.Cout, tile.TN),
    spec.B * (split?.S ?? 1),
  ];
  return { pipeline, workgroups, split };
}

/** Split-K's second pass: the S partial sums added, then the bias, embedding and residual, into out. */
async function splitKReduce(
  ctx: GpuContext,
  spec: ConvSpec,
  [Hout, Wout]: [number, number],
  split: { S: number; parts: GPUBuffer },
  bufs: { params: GPUBuffer; emb?: GPUBuffer; res?: GPUBuffer; out: GPUBuffer },
): Promise<Dispatch> {
  const hasEmb = spec.embOff !== undefined && spec.embOff >= 0;
  const d = dummy(ctx);
  const reduce = await ctx.pipeline(CONV2D_SPLITK_REDUCE_WGSL, {
    label: 'conv2d_splitk_reduce',
    constants: { HAS_EMB: hasEmb ? 1 : 0, HAS_RES: spec.hasRes ? 1 : 0 },
  });
  const ru = SPLITK_REDUCE_UNIFORM.pack(
    {
      S: split.S,
      B: spec.B,
      Cout: spec.Cout,
      M: Hout * Wout,
      bOff: Math.max(spec.bOff, 0),
      embOff: hasEmb ? spec.embOff! : 0,
      hasBias: spec.bOff >= 0 ? 1 : 0,
    },
    spec.label,
  );
  return {
    pipeline: reduce,
    bindGroup: ctx.bind(
      reduce,
      [bufs.params, split.parts, bufs.emb ?? d, bufs.res ?? d, bufs.out, ctx.uniform(ru, `${spec.label}.splitk.u`)],
      `${spec.label}.splitk`,
    ),
    workgroups: grid(ctx, spec.B * spec.Cout * Hout * Wout, 256, spec.label),
    label: `${spec.label}.splitk`,
  };
}

/** [offset, length] of the parameters a conv reads: weight, bias, GroupNorm's gamma and beta. */
export function convRanges(s: ConvSpec): [number, number][] {
  const cin = s.C1 + s.C2;
  const r: [number, number][] = [[s.wOff, s.Cout * cin * s.ks * s.ks]];
  if (s.bOff >= 0) r.push([s.bOff, s.Cout]);
  if (s.norm) r.push([s.gammaOff ?? 0, cin], [s.betaOff ?? 0, cin]);
  return r;
}

/** A conv spec with its parameter offsets rebased into the parameter chunk that starts at `base`. */
function rebaseConv(s: ConvSpec, base: number): ConvSpec {
  return {
    ...s,
    wOff: s.wOff - base,
    bOff: s.bOff >= 0 ? s.bOff - base : s.bOff,
    gammaOff: s.norm ? (s.gammaOff ?? 0) - base : s.gammaOff,
    betaOff: s.norm ? (s.betaOff ?? 0) - base : s.betaOff,
  };
}

/**
 * A plan's conv op (PLAN_OPS.conv.forward). With `env.xn`, a normalised conv's GroupNorm(+Swish) is written out once
 * by its own kernel and the conv reads the result: cheaper where transcendental functions are slow (a software
 * device) than normalising in every conv tap.
 */
export async function recordConv(ctx: GpuContext, op: PlanOpOf<'conv'>, env: ForwardEnv): Promise<Dispatch[]> {
  const view = env.params(convRanges(op.spec));
  const s = rebaseConv(op.spec, view.base);
  const params = view.buf;
  const emb = s.embOff !== undefined && s.embOff >= 0 ? env.emb : undefined;
  const res = op.res ? env.buf(op.res) : undefined;
  const b = op.b ? env.buf(op.b) : undefined;
  if (env.xn && s.norm) {
    const apply = await groupNormApply(ctx, convNormSpec(s, `${op.label}.norm`), {
      params,
      a: env.buf(op.a),
      b,
      stats: env.stats,
      out: env.xn,
    });
    const plain = { ...s, C1: s.C1 + s.C2, C2: 0, norm: 0 as const };
    return [apply, ...(await conv2d(ctx, plain, { params, a: env.xn, emb, res, out: env.buf(op.out) }))];
  }
  const stats = s.norm ? env.stats : undefined;
  return conv2d(ctx, s, { params, a: env.buf(op.a), b, stats, emb, res, out: env.buf(op.out) });
}

/**
 * The tiled kernel's tile for one conv: 128 output channels a workgroup where the layer has that many, 128 pixels
 * where the map has at least 32x32 of them, else 64 (a 128-wide tile on a narrow layer would idle half its
 * invocations). `fixed` (EngineOptions.tiledTile) overrides either.
 */
export function tiledShape(M: number, Cout: number, fixed: Partial<TiledShape> = {}): TiledShape {
  return {
    TM: fixed.TM ?? (M >= 1024 ? 128 : 64),
    TN: fixed.TN ?? (Cout >= 128 ? 128 : 64),
  };
}

/**
 * The 'mma' kernel's tile for one conv, by the same rule as tiledShape, within what the device's fragments and
 * subgroups allow (shaders/conv2d_mma.ts mmaTile: multiples of 2S pixels and of (subgroups / 2) * S channels, up to
 * 8S each, pixels dividing the workgroup's invocations): 64 to 128 a side with NVIDIA's 16x16 fragments and 32-wide
 * subgroups, up to 64 x 64 with lavapipe's 8x8 and 8-wide ones. The split ('mma3') kernel holds twice the
 * accumulators and fragments, so by default it takes at most 4 fragments a subgroup (with 4 subgroups, 64 x 64 with
 * 16x16 fragments: 64 accumulator registers of an NVIDIA thread, about 160 in all; 128 x 64 would need about 270 of
 * its 255 and spill; with 8 subgroups, 128 x 64 or 64 x 128), halving its pixels first; SR3_MMA_TILE can ask for up
 * to 8 (mmaTile's limit). `fixed` (EngineOptions.mma: TM, TN) overrides either; mmaTile checks it.
 */
export function mmaShape(
  M: number,
  Cout: number,
  s: {
    fragment: number;
    subgroupSize: number;
    split?: boolean;
    subgroups?: 4 | 8;
    tk?: 32 | 64;
    batched?: boolean;
    pad?: boolean;
    maxWorkgroupBytes?: number;
  },
  fixed: { TM?: number; TN?: number } = {},
): { TM: number; TN: number } {
  const S = s.fragment;
  const NSG = s.subgroups ?? 4;
  const SGN = NSG / 2; // subgroups across the channels
  let TM = fixed.TM ?? Math.max(2 * S, Math.min(M >= 1024 ? 128 : 64, NSG * s.subgroupSize, 8 * S));
  let TN = fixed.TN ?? Math.max(SGN * S, Math.min(Cout >= 128 ? 128 : 64, 8 * S));
  const frags = () => (TM / (2 * S)) * (TN / (SGN * S));
  while (s.split && frags() > 4 && TM > 2 * S && fixed.TM === undefined) TM /= 2;
  while (s.split && frags() > 4 && TN > SGN * S && fixed.TN === undefined) TN /= 2;
  // the batched gather holds at most 32 values an invocation a step (64-deep steps over 128 pixels need 8 subgroups)
  while (((s.tk ?? 32) * TM) / (NSG * s.subgroupSize) > 32 && TM > 2 * S && fixed.TM === undefined) TM /= 2;
  // and within the device's workgroup memory (64-deep split steps take more than 48 KiB at 128 x 64)
  const bytes = () => mmaTileBytes({ ...s, TM, TN });
  while (s.maxWorkgroupBytes !== undefined && bytes() > s.maxWorkgroupBytes && TM > 2 * S && fixed.TM === undefined)
    TM /= 2;
  return { TM, TN };
}

/**
 * Split-K's chunks for a GEMM conv of `workgroups` output tiles and a reduction of K (EngineOptions.splitK): below
 * the target, S chunks of at least 8 k-steps of `tk`, at most 32 and at most `maxParts` (the partial sums of S chunks
 * must fit one storage binding: a device with small bindings splits less rather than fails); GPU paths only (the
 * direct kernel does not use it), unless forced.
 */
export function splitK(
  o: Pick<EngineOptions, 'splitK' | 'paths'>,
  workgroups: number,
  K: number,
  tk: number,
  maxParts = Number.POSITIVE_INFINITY,
): { S: number; kChunk: number } {
  let S = 1;
  const { target, force } = o.splitK;
  if (force !== undefined) S = force;
  else if (o.paths === 'gpu' && target > 0 && workgroups < target) {
    S = Math.min(Math.ceil(target / workgroups), Math.floor(K / (8 * tk)), 32, maxParts);
  }
  if (S < 2) return { S: 1, kChunk: 0 };
  const kChunk = ceilDiv(ceilDiv(K, S), tk) * tk;
  S = ceilDiv(K, kChunk);
  return S < 2 ? { S: 1, kChunk: 0 } : { S, kChunk };
}

function scratch(ctx: GpuContext, bytes: number): GPUBuffer {
  return sharedScratch(ctx, 'conv2d.splitk_partials', bytes);
}

/**
 * Check the options a context runs with against its device: a conv2d kernel the device cannot run is an error that
 * names what it lacks, never a silent fallback (the mixed-precision kernels), and a fixed tensor-core tile or 64-deep
 * steps must fit the device's fragments and subgroups. The error's `option` names the offending option.
 */
export async function checkEngineOptions(ctx: GpuContext): Promise<void> {
  const o = ctx.options;
  const fail = (option: 'convKernel' | 'mma.tile' | 'mma.tk', e: unknown): never => {
    throw Object.assign(new Error((e as Error).message.replace(/^conv2dMmaWgsl: /, '')), { option });
  };
  try {
    if (o.convKernel === 'mma' || o.convKernel === 'mma3') await requireMma(ctx, o.convKernel);
    if (o.convKernel === 'f16') requireF16(ctx);
  } catch (e) {
    fail('convKernel', e);
  }
  const s = await mmaSupport(ctx);
  if (!s.ok) return;
  const base = {
    body: 'subgroup-matrix' as const,
    subgroupSize: s.subgroupSize,
    fragment: s.fragment,
    subgroups: o.mma.subgroups,
    batched: o.batchLoads,
  };
  if (o.mma.TM !== undefined || o.mma.TN !== undefined) {
    try {
      // the split kernel ('mma3') takes fewer fragments a subgroup
      mmaTile({
        ...base,
        TM: o.mma.TM,
        TN: o.mma.TN,
        split: o.convKernel === 'mma3',
        maxWorkgroupBytes: ctx.limits.maxComputeWorkgroupStorageSize,
        pad: o.mma.pad,
        tk: o.mma.tk,
      });
    } catch (e) {
      fail('mma.tile', e);
    }
  } else if (o.mma.tk === 64) {
    // 64-deep steps need a workgroup of at least 64 invocations (one decodes each reduction index): the smallest tile
    try {
      mmaTile({ ...base, TM: 2 * s.fragment!, TN: (o.mma.subgroups / 2) * s.fragment!, tk: 64 });
    } catch (e) {
      fail('mma.tk', e);
    }
  }
}

function requireF16(ctx: GpuContext): { body: 'f16-tiles' } {
  if (!ctx.features.shaderF16) {
    throw new Error(
      `the 'f16' conv2d kernel needs the 'shader-f16' feature, which ${ctx.adapter.description} does not offer; use 'tiled' or 'direct'`,
    );
  }
  return { body: 'f16-tiles' };
}

export interface MmaSupport {
  ok: boolean;
  /** why not, when not ok */
  reason?: string;
  subgroupSize?: number;
  syntax?: SubgroupMatrixSyntax;
  /** S of the f16->f32 SxSxS subgroup-matrix config the kernel uses */
  fragment?: number;
}

/**
 * Whether this device can run the 'mma' conv2d kernel, and how: the feature, an f16->f32 16x16x16 or 8x8x8 config, one fixed
 * subgroup size (the kernel's workgroup is four or eight subgroups), and a compiler that takes one of the two spellings of the
 * subgroup-matrix builtins (probed by compiling a small kernel; the answer is cached per context).
 */
export function mmaSupport(ctx: GpuContext): Promise<MmaSupport> {
  return ctx.memo('mma-support', () => probeMma(ctx));
}

async function probeMma(ctx: GpuContext): Promise<MmaSupport> {
  const a = ctx.adapter;
  if (!ctx.features.subgroupMatrix)
    return {
      ok: false,
      reason: `${a.description} does not offer 'chromium-experimental-subgroup-matrix' (on NVIDIA, Dawn needs the allow_unsafe_apis toggle)`,
    };
  if (!ctx.features.shaderF16 || !ctx.features.subgroups)
    return { ok: false, reason: `${a.description} lacks 'shader-f16' or 'subgroups'` };
  // square f16->f32 configs, the largest first (16x16x16 on NVIDIA; lavapipe offers 8x8x8)
  const cfg = a.subgroupMatrixConfigs
    .filter(
      (c) =>
        c.componentType === 'f16' &&
        c.resultComponentType === 'f32' &&
        c.M === c.N &&
        c.N === c.K &&
        (c.M === 8 || c.M === 16),
    )
    .sort((x, y) => y.M - x.M)[0];
  if (!cfg) {
    const have =
      a.subgroupMatrixConfigs
        .map((c) => `${c.componentType}->${c.resultComponentType} ${c.M}x${c.N}x${c.K}`)
        .join(', ') || 'none';
    return {
      ok: false,
      reason: `${a.description} has no f16->f32 16x16x16 or 8x8x8 subgroup-matrix config (it has: ${have})`,
    };
  }
  if (!a.subgroupMaxSize || a.subgroupMinSize !== a.subgroupMaxSize) {
    return {
      ok: false,
      reason: `${a.description} has subgroups of ${a.subgroupMinSize}..${a.subgroupMaxSize} invocations; the 'mma' kernel needs one fixed size`,
    };
  }
  const subgroupSize = a.subgroupMaxSize;
  const fragment = cfg.M;
  if (subgroupSize * 4 < 2 * fragment || (4 * subgroupSize) % (2 * fragment) !== 0) {
    return {
      ok: false,
      reason: `${a.description}'s subgroups of ${subgroupSize} do not fit the 'mma' kernel's tiles of ${fragment}x${fragment} fragments`,
    };
  }
  const errors: string[] = [];
  for (const syntax of ['template', 'arg'] as const) {
    try {
      await ctx.pipeline(subgroupMatrixProbeWgsl(syntax, subgroupSize, fragment), {
        label: `subgroup_matrix_probe_${syntax}`,
      });
      return { ok: true, subgroupSize, syntax, fragment };
    } catch (e) {
      errors.push(`${syntax}: ${(e as Error).message.split('\n').slice(0, 3).join(' ')}`);
    }
  }
  return {
    ok: false,
    reason: `the shader compiler took neither spelling of the subgroup-matrix builtins (${errors.join('; ')})`,
  };
}

async function requireMma(
  ctx: GpuContext,
  kernel: 'mma' | 'mma3',
): Promise<{ body: 'subgroup-matrix'; subgroupSize: number; syntax: SubgroupMatrixSyntax; fragment: number }> {
  const s = await mmaSupport(ctx);
  if (!s.ok)
    throw new Error(
      `the '${kernel}' conv2d kernel cannot run here: ${s.reason}; use ${kernel === 'mma' ? "'f16' or 'tiled'" : "'tiled' (f32)"}`,
    );
  const wg = mmaWorkgroupSize({ body: 'subgroup-matrix', subgroupSize: s.subgroupSize });
  if (wg > ctx.limits.maxComputeInvocationsPerWorkgroup) {
    throw new Error(`the '${kernel}' conv2d kernel needs ${wg} invocations per workgroup, over this device's limit`);
  }
  return { body: 'subgroup-matrix', subgroupSize: s.subgroupSize!, syntax: s.syntax!, fragment: s.fragment! };
}
/**
 * The direct kernel's block for one conv: PX pixels of a row x RN output channels per invocation (on lavapipe a load
 * costs ~20x an FMA, so bigger blocks run faster, but LLVM's compile time grows quickly with the block),
 * WG invocations per workgroup (fewer on small maps, so lanes are not left idle), CC input channels staged at a
 * time (8 KiB of weights in workgroup memory). `fixed` (EngineOptions.directBlock) overrides any field.
 */
export function directBlock(
  ks: 1 | 3,
  Hout: number,
  Wout: number,
  _Cout: number, // kept for callers: every block is 8 channels now (below)
  fixed: { PX?: number; RN?: number; CC?: number; WG?: number } = {},
): { PX: number; RN: number; CC: number; WG: number } {
  // 16 pixels on maps at least 32 wide: faster than 8 (fewer weight loads per FMA; at 32x32 too), but about twice
  // the LLVM compile per pipeline on lavapipe; the 32-wide maps share the larger maps' pipelines (the same block and
  // 64 invocations), so they cost no compile. Narrower maps keep 8: 16 would leave too few invocations a workgroup.
  // (bench/README.md: "Bigger blocks vs compile time" has the figures of the blocks tried, "Cold start" the sharing.)
  const PX = fixed.PX ?? (Wout >= 32 ? 16 : Wout >= 8 ? 8 : 4);
  // 8 channels even for a conv with 4 or fewer (the U-Net's last, 3 channels): it then shares the 8-channel
  // pipeline, where a 4-channel block cost a pipeline of its own (6 CPU-s of LLVM on lavapipe for the quick start's),
  // at the cost of doubling the FMAs of a conv that was 0.2% of a step's
  const RN = fixed.RN ?? 8;
  const units = Hout * ceilDiv(Wout, PX);
  const WG = fixed.WG ?? Math.min(64, Math.max(8, 2 ** Math.ceil(Math.log2(units))));
  const CC = fixed.CC ?? Math.max(1, Math.floor(512 / (ks * ks * (RN / 4))));
  return { PX, RN, CC, WG };
}
