// conv2d as an implicit GEMM: M = output pixels, N = output channels, K = Cin * KS * KS.
// Fused into the input load: the skip concatenation (channels [0,C1) from inA, [C1,C1+C2) from inB, never copied),
// nearest-x2 upsampling (the conv reads the half-size map at (y/2, x/2)), and GroupNorm (+ Swish) with precomputed
// per-(batch, group) statistics; zero padding applies after the normalisation, as in the reference (GN -> Swish ->
// Conv2d(padding=1)). Fused into the write: bias, the per-(batch, channel) noise-level embedding, a residual tensor.
// All weights live in one flat `params` buffer; offsets come in the uniform.
import { activationWgsl } from './activation.ts';
import { CONV_SHAPE_FIELDS, catLoadWgsl, normActWgsl } from './conv2d_common.ts';
import { uniformLayout } from './uniform.ts';

/**
 * The im2col gather of the GEMM kernels with its index math hoisted. Each invocation always stages the same pixel of
 * the tile (mm = li % TM: its output row and column are divided out once per workgroup, not per element), and before
 * each k-step the first TK invocations decode the step's TK reduction indices once for the whole workgroup: input
 * channel, tap offsets, and the GroupNorm affine folded into one scale and shift (mean, rstd, gamma and beta are read
 * once per channel instead of once per element). Needs WG a multiple of TM; expects the GEMM_CONV_HEADER bindings,
 * M, K, b, m0, li and k0 in scope, and writes the value of element (kk, mm) through `store(kk, mm, value)`.
 */
export interface StagedIm2col {
  /** workgroup arrays, at module scope */
  decl: string;
  /** once per workgroup, before the k loop */
  setup: string;
  /** at the top of each k-step: decode the step's reduction indices (ends with a barrier) */
  decode: string;
  /** the gather into the A tile (batched: into the registers ra0.. and the mask rmask only) */
  gather: string;
  /**
   * batched only: the registered values into the A tile through `store`, with the GroupNorm (+ Swish) and the zero
   * padding applied. Needs the same step's decode in the workgroup arrays, so it runs before the next decode.
   */
  finish?: string;
}

export function stagedIm2col(o: {
  TM: number;
  TK: number;
  WG: number;
  store: (kk: string, mm: string, v: string) => string;
  batched?: boolean;
}): StagedIm2col {
  const { TM, TK, WG } = o;
  if (WG % TM !== 0) throw new Error(`stagedIm2col: ${WG} invocations do not cover ${TM} pixels evenly`);
  const per = (TM * TK) / WG;
  const stride = WG / TM;
  if (o.batched) return batchedIm2col(o, per, stride);
  return {
    decl: /* wgsl */ `
var<workgroup> kCh: array<u32, ${TK}>;      // input channel of each reduction index of the step (0xffffffff: past K)
var<workgroup> kDy: array<i32, ${TK}>;      // its tap's row and column offsets (ky - pad, kx - pad)
var<workgroup> kDx: array<i32, ${TK}>;
var<workgroup> kScale: array<f32, ${TK}>;   // GroupNorm folded: x * scale + shift
var<workgroup> kShift: array<f32, ${TK}>;`,
    setup: /* wgsl */ `
  let smm = li % ${TM}u;
  let skk0 = li / ${TM}u;
  let sm = m0 + smm;
  let sLive = sm < M;
  let soy = sm / p.Wout;
  let sox = sm - soy * p.Wout;
  let syb = i32(soy * STRIDE);
  let sxb = i32(sox * STRIDE);
  var sHe = i32(p.Hin);
  var sWe = i32(p.Win);
  if (UPSAMPLE) { sHe = 2 * sHe; sWe = 2 * sWe; }
  let shw = p.Hin * p.Win;
  var scpg = 1u;
  if (NORM != 0u) { scpg = (p.C1 + p.C2) / p.G; }`,
    decode: /* wgsl */ `
    if (li < ${TK}u) {
      let k = k0 + li;
      var ci = 0xffffffffu;
      if (k < K) {
        ci = k / (KS * KS);
        let r = k - ci * KS * KS;
        let ky = r / KS;
        let pad = i32(KS / 2u);
        kDy[li] = i32(ky) - pad;
        kDx[li] = i32(r - ky * KS) - pad;
        var sc = 1.0;
        var sh = 0.0;
        if (NORM != 0u) {
          let s = p.statsOff + (b * p.G + ci / scpg) * 2u;
          sc = stats[s + 1u] * params[p.gOff + ci];
          sh = params[p.betaOff + ci] - stats[s] * sc;
        }
        kScale[li] = sc;
        kShift[li] = sh;
      }
      kCh[li] = ci;
    }
    workgroupBarrier();`,
    gather: /* wgsl */ `
    for (var e = 0u; e < ${per}u; e++) {
      let kk = skk0 + e * ${stride}u;
      let ci = kCh[kk];
      let iy = syb + kDy[kk];
      let ix = sxb + kDx[kk];
      var v = 0.0;
      if (sLive && ci != 0xffffffffu && iy >= 0 && ix >= 0 && iy < sHe && ix < sWe) {
        var sy = u32(iy);
        var sx = u32(ix);
        if (UPSAMPLE) { sy = sy / 2u; sx = sx / 2u; }
        ${catLoadWgsl('v', 'ci', 'shw', 'sy * p.Win + sx')}
        ${normActWgsl('v', 'v * kScale[kk] + kShift[kk]')}
      }
      ${o.store('kk', 'smm', 'v')}
    }`,
  };
}

/**
 * The batched form of stagedIm2col (EngineOptions.batchLoads): every load of a step is issued before any of its values is used,
 * so their latencies overlap. The inline form uses each value as it arrives (GroupNorm, Swish, the f16 conversion),
 * and a compiler must then wait for each load in turn; here the loads go to named registers (ra0.., the loop unrolled
 * in the generator so that no array can fall to local memory), from clamped addresses that are always in bounds, with
 * one bit of rmask a value that is real (not padding, past K or past the map). `finish` applies the GroupNorm, the
 * Swish and the padding, and stores, after the step's multiplies where the kernel prefetches.
 */
function batchedIm2col(
  o: { TM: number; TK: number; WG: number; store: (kk: string, mm: string, v: string) => string },
  per: number,
  stride: number,
): StagedIm2col {
  if (per > 32) throw new Error(`stagedIm2col: the batched gather holds at most 32 values an invocation, not ${per}`);
  const plain = stagedIm2col({ ...o, batched: false });
  const range = [...Array(per).keys()];
  const kk = (e: number) => (e === 0 ? 'skk0' : `(skk0 + ${e * stride}u)`);
  return {
    decl: plain.decl,
    setup: `${plain.setup}
  let sHl = sHe - 1;
  let sWl = sWe - 1;
${range.map((e) => `  var ra${e} = 0.0;`).join('\n')}
  var rmask = 0u;`,
    decode: plain.decode,
    gather: `
    rmask = 0u;
${range
  .map(
    (e) => `    {
      let ci = kCh[${kk(e)}];
      let iy = syb + kDy[${kk(e)}];
      let ix = sxb + kDx[${kk(e)}];
      let ok = sLive && ci != 0xffffffffu && iy >= 0 && ix >= 0 && iy < sHe && ix < sWe;
      var sy = u32(clamp(iy, 0, sHl));
      var sx = u32(clamp(ix, 0, sWl));
      if (UPSAMPLE) { sy = sy / 2u; sx = sx / 2u; }
      let cc = select(0u, ci, ok);
      ${catLoadWgsl(`ra${e}`, 'cc', 'shw', 'sy * p.Win + sx')}
      rmask |= select(0u, ${(2 ** e) >>> 0}u, ok);
    }`,
  )
  .join('\n')}`,
    finish: range
      .map(
        (e) => `    {
      var v = 0.0;
      if ((rmask & ${(2 ** e) >>> 0}u) != 0u) {
        v = ra${e};
        ${normActWgsl('v', `v * kScale[${kk(e)}] + kShift[${kk(e)}]`)}
      }
      ${o.store(kk(e), 'smm', 'v')}
    }`,
      )
      .join('\n'),
  };
}

/**
 * The weights of one k-step, batched as the gather is (see batchedIm2col): invocation li loads the weights
 * idx = li + e * WG (e < PB) of the B tile, reduction index kb = idx % TK of output channel nn = idx / TK, into rb0..,
 * from clamped addresses (a weight past K meets a zero input, one past Cout is never written out); `stage` stores
 * them through put(idx, kb, nn, value).
 */
export function batchedWeights(o: { PB: number; WG: number; TK: number }): {
  regs: string;
  load: string;
  stage: (put: (idx: string, kb: string, nn: string, v: string) => string) => string;
} {
  const range = [...Array(o.PB).keys()];
  const at = (e: number) => `let idx = li + ${e * o.WG}u; let nn = idx / ${o.TK}u; let kb = idx - nn * ${o.TK}u;`;
  return {
    regs: range.map((e) => `  var rb${e} = 0.0;`).join('\n'),
    load: range
      .map((e) => `    { ${at(e)} rb${e} = params[p.wOff + min(n0 + nn, p.Cout - 1u) * K + min(k0 + kb, K - 1u)]; }`)
      .join('\n'),
    stage: (put) => range.map((e) => `    { ${at(e)} ${put('idx', 'kb', 'nn', `rb${e}`)} }`).join('\n'),
  };
}

/**
 * Split-K: with SPLIT_K the reduction is cut into chunks of p.kChunk (a multiple of the kernel's TK), workgroup z is
 * batch * splits + split, and each workgroup writes its raw partial sum to outp[split][b][co][m] (no epilogue);
 * CONV2D_SPLITK_REDUCE_WGSL then adds the partials and applies the epilogue. Convs whose output is too small to fill
 * a GPU (low-resolution levels at batch 1: 8x8 x 512 channels is 8 workgroups) use it. The chunk is a uniform, not an
 * override constant, so that convs split into different chunks (and a U-Net at another batch size) share pipelines:
 * every pipeline is a driver compile, and on an H100 a U-Net took 7-14 s to build.
 */
export const SPLIT_K_DECL = /* wgsl */ `override SPLIT_K: bool = false;  // false: the whole reduction in one workgroup`;
export const SPLIT_K_RANGE = /* wgsl */ `
  var b = wg.z;
  var split = 0u;
  var kBeg = 0u;
  var kEnd = K;
  if (SPLIT_K) {
    let chunk = max(p.kChunk, 1u);
    let splits = (K + chunk - 1u) / chunk;
    b = wg.z / splits;
    split = wg.z - b * splits;
    kBeg = split * chunk;
    kEnd = min(K, kBeg + chunk);
  }`;

/** The split-K reduction's uniform: S partial sums of B x Cout x M outputs, and the epilogue's bias and embedding. */
export const SPLITK_REDUCE_UNIFORM = uniformLayout('R', {
  S: 'u32',
  B: 'u32',
  Cout: 'u32',
  M: 'u32',
  bOff: 'u32',
  embOff: 'u32',
  hasBias: 'u32',
});

/** Sum of the split-K partials parts[s][b][co][m] plus the conv epilogue (bias, embedding, residual) into outp. */
export const CONV2D_SPLITK_REDUCE_WGSL = /* wgsl */ `
${SPLITK_REDUCE_UNIFORM.wgsl}
override HAS_EMB: bool = false;
override HAS_RES: bool = false;
@group(0) @binding(0) var<storage, read> params: array<f32>;
@group(0) @binding(1) var<storage, read> parts: array<f32>;
@group(0) @binding(2) var<storage, read> emb: array<f32>;
@group(0) @binding(3) var<storage, read> res: array<f32>;
@group(0) @binding(4) var<storage, read_write> outp: array<f32>;
@group(0) @binding(5) var<uniform> r: R;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let n = r.B * r.Cout * r.M;
  let o = gid.x + gid.y * nwg.x * 256u;
  if (o >= n) { return; }
  var v = 0.0;
  for (var s = 0u; s < r.S; s++) { v += parts[s * n + o]; }
  let co = (o / r.M) % r.Cout;
  let b = o / (r.M * r.Cout);
  if (r.hasBias != 0u) { v += params[r.bOff + co]; }
  if (HAS_EMB) { v += emb[r.embOff + b * r.Cout + co]; }
  if (HAS_RES) { v += res[o]; }
  outp[o] = v;
}
`;

/**
 * The uniform of every conv2d forward kernel (direct, tiled and mixed-precision): batch, input channels of A and of
 * the concatenated B, the stored input's size, the output's size and channels, GroupNorm's groups, the offsets in the
 * params buffer of the weight, bias, GroupNorm's gamma and beta, of the embedding and of the statistics, whether
 * there is a bias, and split-K's chunk of the reduction (the GEMM kernels with SPLIT_K).
 */
export const CONV_UNIFORM = uniformLayout('P', {
  ...CONV_SHAPE_FIELDS,
  G: 'u32',
  wOff: 'u32',
  bOff: 'u32',
  gOff: 'u32',
  betaOff: 'u32',
  embOff: 'u32',
  statsOff: 'u32',
  hasBias: 'u32',
  // split-K's chunk (GEMM kernels); whether the embedding and the residual are added (the direct kernel: the GEMM
  // kernels have override constants for those)
  kChunk: 'u32',
  hasEmb: 'u32',
  hasRes: 'u32',
});

/**
 * The uniform, overrides and bindings of the GEMM conv kernels (tiled f32 and the mixed-precision ones): the host
 * side (engine/ops/conv2d.ts conv2d) binds them all the same way.
 */
export const GEMM_CONV_HEADER = /* wgsl */ `${CONV_UNIFORM.wgsl}

override KS: u32 = 3u;         // kernel size: 1 or 3 (padding KS/2)
override STRIDE: u32 = 1u;     // 1, or 2 for Downsample
override UPSAMPLE: bool = false;
override NORM: u32 = 0u;       // 0: none, 1: GroupNorm, 2: GroupNorm + the activation (ACT)
${activationWgsl()}
override HAS_EMB: bool = false;
override HAS_RES: bool = false;
${SPLIT_K_DECL}

@group(0) @binding(0) var<storage, read> params: array<f32>;
@group(0) @binding(1) var<storage, read> inA: array<f32>;
@group(0) @binding(2) var<storage, read> inB: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read> emb: array<f32>;
@group(0) @binding(5) var<storage, read> res: array<f32>;
@group(0) @binding(6) var<storage, read_write> outp: array<f32>;
@group(0) @binding(7) var<uniform> p: P;

// The epilogue: a split-K partial is written as is; otherwise bias, embedding and residual are added.
fn writeOut(b: u32, split: u32, co: u32, m: u32, M: u32, acc: f32) {
  if (SPLIT_K) { outp[((split * p.B + b) * p.Cout + co) * M + m] = acc; return; }
  var v = acc;
  if (p.hasBias != 0u) { v += params[p.bOff + co]; }
  if (HAS_EMB) { v += emb[p.embOff + b * p.Cout + co]; }
  let o = (b * p.Cout + co) * M + m;
  if (HAS_RES) { v += res[o]; }
  outp[o] = v;
}
`;

/** The tiled kernel's workgroup tile: TM output pixels x TN output channels, each of 16x16 invocations RM x RN. */
export interface TiledShape {
  TM: 64 | 128;
  TN: 64 | 128;
}

/**
 * The tiled implicit-GEMM conv for GPUs: a TM x TN output tile per workgroup of 16x16 invocations, each accumulating
 * an (TM/16) x (TN/16) block in registers; K is staged 16 at a time through workgroup memory, read back as vec4s.
 * 64x64 (4x4 per invocation) suits small layers; 128x128 (8x8) does four times the FMAs per staged element.
 * `prefetch` (EngineOptions.tiledPrefetch): the next k-step's input and weight values are loaded into registers before
 * the current step's multiply-adds and stored to workgroup memory after them, so global-memory latency overlaps the
 * arithmetic instead of stalling every step. `batched` (EngineOptions.batchLoads): the batched gather
 * (batchedIm2col, batchedWeights), all of a step's loads issued before their values are used.
 */
/** The tiled kernel's k-step: reduction indices staged per step (split-K's chunks are whole steps). */
export const TILED_TK = 16;

export function conv2dTiledWgsl(shape: TiledShape, prefetch: boolean, batched: boolean): string {
  const { TM, TN } = shape;
  const TK = TILED_TK;
  const RM = TM / 16;
  const RN = TN / 16;
  const PA = (TK * TM) / 256; // staged values per invocation and step
  const PB = (TK * TN) / 256;
  // the staging: stage (at the top of each k-step: fill the tiles, then a barrier), with the prefetch a prologue before
  // the loop and the next step's loads at the end of stage
  let g: StagedIm2col;
  let regs: string;
  let prologue = '';
  let stage: string;
  const putB = (t: string, w: string) => `let t = ${t}; Bs[t / 4u][t % 4u] = ${w};`;
  if (batched) {
    g = stagedIm2col({
      TM,
      TK,
      WG: 256,
      batched: true,
      store: (kk, mm, v) => `let t = ${kk} * TM + ${mm}; As[t / 4u][t % 4u] = ${v};`,
    });
    const w = batchedWeights({ PB, WG: 256, TK });
    regs = w.regs;
    const loads = `${g.decode}
${g.gather}
${w.load}`;
    const store = `${g.finish}
${w.stage((_idx, kb, nn, v) => putB(`${kb} * TN + ${nn}`, v))}`;
    if (prefetch) {
      prologue = `  if (kBeg < kEnd) {
    let k0 = kBeg;
${loads}
  }`;
      stage = `
    // the values loaded during the previous step (or before the loop) into workgroup memory
${store}
    workgroupBarrier();
    // the next step's loads, in flight during this step's multiply-adds (a uniform branch: barriers inside are fine)
    if (k0 + TK < kEnd) {
      let k0 = k0 + TK;
${loads}
    }`;
    } else {
      stage = `${loads}
${store}
    workgroupBarrier();`;
    }
  } else {
    g = stagedIm2col({
      TM,
      TK,
      WG: 256,
      store: prefetch
        ? (_kk, _mm, v) => `ra[e] = ${v};`
        : (kk, mm, v) => `let t = ${kk} * TM + ${mm}; As[t / 4u][t % 4u] = ${v};`,
    });
    // the weights of one k-step: consecutive invocations read consecutive weights of one output channel
    const weights = (put: (t: string, w: string) => string) => `
    for (var e = 0u; e < ${PB}u; e++) {
      let idx = li + e * 256u;
      let nn = idx / TK;
      let kb = idx - nn * TK;
      let k = k0 + kb;
      let co = n0 + nn;
      var w = 0.0;
      if (k < K && co < p.Cout) { w = params[p.wOff + co * K + k]; }
      ${put('kb * TN + nn', 'w')}
    }`;
    regs = prefetch
      ? `  var ra: array<f32, ${PA}>;
  var rb: array<f32, ${PB}>;`
      : '';
    if (prefetch) {
      prologue = `  if (kBeg < kEnd) {
    let k0 = kBeg;
${g.decode}
${g.gather}
${weights((_t, w) => `rb[e] = ${w};`)}
  }`;
      stage = `
    // the values prefetched during the previous step (or before the loop) into workgroup memory
    for (var e = 0u; e < ${PA}u; e++) {
      let t = (skk0 + e * ${256 / TM}u) * TM + smm;
      As[t / 4u][t % 4u] = ra[e];
    }
    for (var e = 0u; e < ${PB}u; e++) {
      let idx = li + e * 256u;
      let nn = idx / TK;
      let t = (idx - nn * TK) * TN + nn;
      Bs[t / 4u][t % 4u] = rb[e];
    }
    workgroupBarrier();
    // the next step's loads, in flight during this step's multiply-adds (a uniform branch: barriers inside are fine)
    if (k0 + TK < kEnd) {
      let k0 = k0 + TK;
${g.decode}
${g.gather}
${weights((_t, w) => `rb[e] = ${w};`)}
    }`;
    } else {
      stage = `
${g.decode}
    // consecutive invocations gather consecutive pixels of one reduction row, and consecutive weights of one channel
${g.gather}
${weights(putB)}
    workgroupBarrier();`;
    }
  }
  return /* wgsl */ `
${GEMM_CONV_HEADER}

const TM: u32 = ${TM}u;
const TN: u32 = ${TN}u;
const TK: u32 = ${TK}u;
var<workgroup> As: array<vec4f, ${(TK * TM) / 4}>; // [TK][TM]
var<workgroup> Bs: array<vec4f, ${(TK * TN) / 4}>; // [TK][TN]
${g.decl}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u,
        @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let M = p.Hout * p.Wout;
  let K = (p.C1 + p.C2) * KS * KS;
${SPLIT_K_RANGE}
  let m0 = wg.x * TM;
  let n0 = wg.y * TN;
  let tm = lid.x * ${RM}u;
  let tn = lid.y * ${RN}u;
  var acc: array<array<f32, ${RN}>, ${RM}>;
${g.setup}
${regs}
${prologue}
  for (var k0 = kBeg; k0 < kEnd; k0 += TK) {
${stage}
    for (var kk = 0u; kk < TK; kk++) {
      var a: array<vec4f, ${RM / 4}>;
      var bw: array<vec4f, ${RN / 4}>;
      for (var i = 0u; i < ${RM / 4}u; i++) { a[i] = As[(kk * TM + tm) / 4u + i]; }
      for (var j = 0u; j < ${RN / 4}u; j++) { bw[j] = Bs[(kk * TN + tn) / 4u + j]; }
      for (var i = 0u; i < ${RM}u; i++) {
        let ai = a[i / 4u][i % 4u];
        for (var j = 0u; j < ${RN}u; j++) { acc[i][j] = fma(ai, bw[j / 4u][j % 4u], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < ${RM}u; i++) {
    let m = m0 + tm + i;
    if (m >= M) { continue; }
    for (var j = 0u; j < ${RN}u; j++) {
      let co = n0 + tn + j;
      if (co >= p.Cout) { continue; }
      writeOut(b, split, co, m, M, acc[i][j]);
    }
  }
}
`;
}

export interface DirectConvShape {
  ks: 1 | 3;
  stride: 1 | 2;
  upsample: boolean;
  /** consecutive output pixels of one row per invocation */
  PX: number;
  /** output channels per invocation (a multiple of 4), the same for the whole workgroup */
  RN: number;
  /** input channels whose weights are staged in workgroup memory at a time */
  CC: number;
  /** invocations per workgroup */
  WG: number;
  /** whether input B (the skip concatenation) has channels: without it, its loop is left out of the text */
  concat: boolean;
  /**
   * Read the inputs as vec4s (a per-lane vec4 load costs about twice a scalar one on lavapipe, for four values). Only
   * for stride 1 without upsampling, PX a multiple of 4 and input rows a multiple of 4 wide (the caller checks Win).
   */
  vec?: boolean;
}

/**
 * The same convolution for CPU-like devices (software Vulkan), where every load instruction is expensive (a per-lane
 * loop with bounds checks) but arithmetic is cheap. Each invocation owns PX consecutive pixels of one output row and
 * RN output channels shared by the whole workgroup: for one input channel and kernel row it loads the PX + ks - 1
 * input values its pixels touch once (GroupNorm/Swish applied once per value), and reads the weights as vec4s of RN
 * channels from workgroup memory, where they are staged CC input channels at a time in a [ci][tap][RN] layout.
 * Kernel size, stride and upsampling are baked into the text (the address math is unrolled); the fusions are the
 * tiled kernel's (NORM is an override constant); whether an embedding and a residual are added is read from the
 * uniform (tests in the epilogue, nothing next to the reduction), so convs with and without them share pipelines:
 * on lavapipe every pipeline costs seconds of LLVM the first time it runs.
 */
export function conv2dDirectWgsl(o: DirectConvShape): string {
  const { ks, stride, upsample, PX, RN, CC, WG, concat } = o;
  if (RN % 4 !== 0) throw new Error('conv2dDirectWgsl: RN must be a multiple of 4');
  const vec = !!o.vec;
  if (vec && (stride !== 1 || upsample || PX % 4 !== 0))
    throw new Error('conv2dDirectWgsl: vec4 loads need stride 1, no upsampling and PX % 4 == 0');
  const KK = ks * ks;
  const RN4 = RN / 4;
  const pad = ks >> 1;
  const I = [...Array(PX).keys()];
  const J = [...Array(RN).keys()];
  // distinct input columns (in the upsampled frame when upsampling) touched by the PX pixels: ox0*stride + d - pad
  const cols = [...new Set(I.flatMap((i) => [...Array(ks).keys()].map((kx) => i * stride + kx)))].sort((a, b) => a - b);
  const up = upsample ? ' / 2u' : '';
  // Nearest x2 upsampling then a 3x3 conv is, for each output pixel's row and column parity, a 2x2 conv on the
  // half-size map with taps summed: an even column 2m reads m - 1 with w0 and m with w1 + w2, an odd one m with
  // w0 + w1 and m + 1 with w2, and rows likewise. So an upsampling conv reads each half-size value once (PX / 2 + 2
  // loads a row, not PX + 2) and does 2 x 2 taps, not 3 x 3: 4/9 of the FMAs. ox0 is even (PX is), so the column
  // taps are known in the text; the row parity differs between invocations, so the row weights are combined per
  // invocation (a select and an add on the staged vec4s).
  const sub = upsample && ks === 3 && stride === 1;
  if (sub && PX % 2 !== 0) throw new Error('conv2dDirectWgsl: upsampling needs an even PX');
  const U = [...Array(PX / 2 + 2).keys()].map((k) => k - 1); // half-size columns ox0/2 + u
  const L: string[] = [];
  if (sub) {
    L.push(`  let odd = (oy & 1u) == 1u;`);
    L.push(`  let lyb = i32(oy / 2u) - 1 + select(0, 1, odd);`);
    for (const u of U) {
      const n = u < 0 ? `m${-u}` : `${u}`;
      L.push(`  let lx${n} = i32(ox0 / 2u) + ${u};`);
      L.push(`  let vx${n} = lx${n} >= 0 && lx${n} < i32(p.Win);`);
      L.push(`  let cx${n} = u32(select(0, lx${n}, vx${n}));`);
    }
  } else
    for (const d of cols) {
      L.push(`  let ex${d} = exb + ${d};`);
      L.push(`  let vx${d} = ex${d} >= 0 && ex${d} < We;`);
      L.push(`  let cx${d} = u32(select(0, ex${d}, vx${d}))${up};`);
    }
  for (const i of I) for (const j of J) L.push(`  var a${i}_${j} = 0.0;`);
  const setup = L.join('\n');

  // the GroupNorm of input channel ci as x -> (x - mu) * sc + be, read once per channel for all its values
  const channelNorm = [
    `      var mu = 0.0; var sc = 1.0; var be = 0.0;`,
    `      if (NORM != 0u) { let s = p.statsOff + (b * p.G + ci / cpg) * 2u; mu = stats[s]; sc = stats[s + 1u] * params[p.gOff + ci]; be = params[p.betaOff + ci]; }`,
  ];

  // one input channel (ci, local index cl in the staged chunk) read from `src` at channel base `cb`
  const subBody = (src: string): string => {
    const B: string[] = [];
    const nm = (u: number) => (u < 0 ? `m${-u}` : `${u}`);
    B.push(...channelNorm);
    B.push(`      for (var r = 0; r < 2; r++) {`);
    B.push(`        let ly = lyb + r;`);
    B.push(`        let vy = ly >= 0 && ly < i32(p.Hin);`);
    B.push(`        let ry = cb + u32(select(0, ly, vy)) * p.Win;`);
    // kernel rows r and r + 1: r = 0 takes row 0 (even) or rows 0 + 1 (odd); r = 1 rows 1 + 2 (even) or row 2 (odd)
    B.push(`        let ta = r == 0 || !odd;`);
    B.push(`        let tb = r == 1 || odd;`);
    B.push(`        let wt = (cl * 9u + u32(r) * 3u) * ${RN4}u;`);
    for (const u of U) {
      B.push(`        var x${nm(u)} = ${src}[ry + cx${nm(u)}];`);
      B.push(`        ${normActWgsl(`x${nm(u)}`, `(x${nm(u)} - mu) * sc + be`)}`);
      B.push(`        x${nm(u)} = select(0.0, x${nm(u)}, vy && vx${nm(u)});`);
    }
    for (let q = 0; q < RN4; q++) {
      for (let kx = 0; kx < 3; kx++) {
        B.push(
          `        let w${q}_${kx} = select(vec4f(0.0), ws[wt + ${kx * RN4 + q}u], ta) + select(vec4f(0.0), ws[wt + ${3 * RN4 + kx * RN4 + q}u], tb);`,
        );
      }
      // column taps: even pixels w0 | w1 + w2, odd pixels w0 + w1 | w2
      B.push(`        let e${q}_0 = w${q}_0;`);
      B.push(`        let e${q}_1 = w${q}_1 + w${q}_2;`);
      B.push(`        let o${q}_0 = w${q}_0 + w${q}_1;`);
      B.push(`        let o${q}_1 = w${q}_2;`);
    }
    for (const i of I) {
      const m = i >> 1;
      const odd = i & 1;
      const [x0, x1] = odd ? [nm(m), nm(m + 1)] : [nm(m - 1), nm(m)];
      const w = odd ? 'o' : 'e';
      for (const j of J) {
        B.push(`        a${i}_${j} = fma(x${x0}, ${w}${j >> 2}_0[${j & 3}], a${i}_${j});`);
        B.push(`        a${i}_${j} = fma(x${x1}, ${w}${j >> 2}_1[${j & 3}], a${i}_${j});`);
      }
    }
    B.push(`      }`);
    return B.join('\n');
  };

  const body = (src: string): string => {
    if (sub) return subBody(src);
    const B: string[] = [];
    B.push(...channelNorm);
    B.push(`      for (var ky = 0; ky < ${ks}; ky++) {`);
    B.push(`        let ey = eyb + ky;`);
    B.push(`        let vy = ey >= 0 && ey < He;`);
    B.push(`        let ry = cb + u32(select(0, ey, vy))${up} * p.Win;`);
    B.push(`        let wt = (cl * ${KK}u + u32(ky) * ${ks}u) * ${RN4}u;`);
    if (vec) {
      // column d is at offset e = d - pad from ox0: vec4 number floor(e / 4) of the row segment, component e mod 4
      B.push(`        let rv = (ry + ox0) / 4u;`);
      const vk = [...new Set(cols.map((d) => Math.floor((d - pad) / 4)))];
      for (const k of vk) {
        const idx = k < 0 ? `select(rv - ${-k}u, rv, ox0 < ${-4 * k}u)` : `rv + ${k}u`;
        B.push(`        let v${k < 0 ? `m${-k}` : k} = ${src}[${idx}];`);
      }
    }
    for (const d of cols) {
      if (vec) {
        const e = d - pad;
        const k = Math.floor(e / 4);
        B.push(`        var x${d} = v${k < 0 ? `m${-k}` : k}[${e - 4 * k}];`);
      } else B.push(`        var x${d} = ${src}[ry + cx${d}];`);
      B.push(`        ${normActWgsl(`x${d}`, `(x${d} - mu) * sc + be`)}`);
      B.push(`        x${d} = select(0.0, x${d}, vy && vx${d});`);
    }
    for (let kx = 0; kx < ks; kx++) {
      for (let q = 0; q < RN4; q++) B.push(`        let w${q}_${kx} = ws[wt + ${kx * RN4 + q}u];`);
      for (const i of I) {
        const d = i * stride + kx;
        for (const j of J) B.push(`        a${i}_${j} = fma(x${d}, w${j >> 2}_${kx}[${j & 3}], a${i}_${j});`);
      }
    }
    B.push(`      }`);
    return B.join('\n');
  };

  // The epilogue is a loop over the accumulators copied into an array, not PX x RN unrolled stores: each unrolled
  // store with its bounds test and its residual load was a branch across which all PX x RN accumulators stayed live,
  // and lavapipe's LLVM took 17 CPU-s to compile a 16 x 8 block that way against 2.5 s with the loop (the main loop's
  // FMAs alone: 1 s). The loop runs once per invocation, next to a reduction of Cin x ks^2 x PX x RN FMAs.
  const E: string[] = [`  var acc: array<f32, ${PX * RN}>;`];
  for (const j of J) for (const i of I) E.push(`  acc[${j * PX + i}] = a${i}_${j};`);
  E.push(`  if (live) {
    let nj = min(${RN}u, p.Cout - co0);
    let ni = min(${PX}u, p.Wout - ox0);
    for (var j = 0u; j < nj; j++) {
      let co = co0 + j;
      var add = 0.0;
      if (p.hasBias != 0u) { add += params[p.bOff + co]; }
      if (p.hasEmb != 0u) { add += emb[p.embOff + b * p.Cout + co]; }
      let ob = (b * p.Cout + co) * M + oy * p.Wout + ox0;
      for (var i = 0u; i < ni; i++) {
        var v = acc[j * ${PX}u + i] + add;
        if (p.hasRes != 0u) { v += res[ob + i]; }
        outp[ob + i] = v;
      }
    }
  }`);

  const chunk = (src: string, first: string, last: string, base: string): string => `
  for (var c0 = ${first}; c0 < ${last}; c0 += ${CC}u) {
    let cn = min(${CC}u, ${last} - c0);
    workgroupBarrier();
    for (var e = li; e < cn * ${KK * RN4}u; e += ${WG}u) {
      let cl = e / ${KK * RN4}u;
      let r = e - cl * ${KK * RN4}u;
      let t = r / ${RN4}u;
      let q = r - t * ${RN4}u;
      let wk = (c0 + cl) * ${KK}u + t;
      var w4 = vec4f(0.0);
      for (var c = 0u; c < 4u; c++) {
        let co = co0 + q * 4u + c;
        if (co < p.Cout) { w4[c] = params[p.wOff + co * K + wk]; }
      }
      ws[e] = w4;
    }
    workgroupBarrier();
    for (var cl = 0u; cl < cn; cl++) {
      let ci = c0 + cl;
      let cb = ${base};
${body(src)}
    }
  }`;

  return /* wgsl */ `
${CONV_UNIFORM.wgsl}

override NORM: u32 = 0u;
${activationWgsl()}

@group(0) @binding(0) var<storage, read> params: array<f32>;
@group(0) @binding(1) var<storage, read> inA: array<${vec ? 'vec4f' : 'f32'}>;
@group(0) @binding(2) var<storage, read> inB: array<${vec ? 'vec4f' : 'f32'}>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read> emb: array<f32>;
@group(0) @binding(5) var<storage, read> res: array<f32>;
@group(0) @binding(6) var<storage, read_write> outp: array<f32>;
@group(0) @binding(7) var<uniform> p: P;

var<workgroup> ws: array<vec4f, ${CC * KK * RN4}>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let M = p.Hout * p.Wout;
  let Cin = p.C1 + p.C2;
  let K = Cin * ${KK}u;
  let b = wg.z;
  let co0 = wg.y * ${RN}u;
  let QW = (p.Wout + ${PX - 1}u) / ${PX}u;
  let unit = wg.x * ${WG}u + li;
  let live = unit < p.Hout * QW;
  let uc = min(unit, p.Hout * QW - 1u);
  let oy = uc / QW;
  let ox0 = (uc - oy * QW) * ${PX}u;
  let He = i32(p.Hin${upsample ? ' * 2u' : ''});
  let We = i32(p.Win${upsample ? ' * 2u' : ''});
  let eyb = i32(oy * ${stride}u) - ${pad};
  let exb = i32(ox0 * ${stride}u) - ${pad};
  let hw = p.Hin * p.Win;
  var cpg = 1u;
  if (NORM != 0u) { cpg = Cin / p.G; }
${setup}
${chunk('inA', '0u', 'p.C1', '(b * p.C1 + ci) * hw')}
${concat ? chunk('inB', 'p.C1', 'Cin', '(b * p.C2 + (ci - p.C1)) * hw') : '  _ = arrayLength(&inB); // keeps binding 2 in the layout'}
${E.join('\n')}
}
`;
}
