// conv2d as an implicit GEMM with f16 operands and f32 accumulation: the mixed-precision path for GPUs.
// M = output pixels, N = output channels, K = Cin * KS * KS, as in conv2d.ts, with the same fusions (skip concatenation,
// nearest-x2 upsampling, GroupNorm(+Swish) on the input load; bias, embedding and residual on the write) and the same
// uniform layout, so the host side is shared. Inputs, weights and outputs stay f32 in memory: the im2col gather
// rounds each (normalised) input and each weight to f16 as it stages them in workgroup memory, the products are exact
// in f32 and are summed in f32. Only the operands lose precision (11-bit significands; values beyond f16's range
// are clamped to +-65504 rather than becoming infinite).
//
// Two bodies over the same staging and epilogue:
// - 'subgroup-matrix': four or eight subgroups each multiply SxSxS f16 fragments into f32 result fragments with the
//   chromium-experimental-subgroup-matrix builtins (S = 16 on NVIDIA tensor cores; lavapipe's cooperative matrices,
//   Mesa 25.1 and later, offer S = 8, so the body is tested on a software device too). Each subgroup owns a quarter
//   or an eighth of the workgroup's tile (mmaTile) and learns which from @builtin(subgroup_id): the matrix builtins need a
//   subgroup-uniform offset, which an id derived from local_invocation_index is not. Two spellings of the builtins
//   exist across Dawn versions (`col_major` as a bool argument, or as a template parameter); `syntax` picks one and
//   the host probes which one the device's compiler takes.
// - 'f16-tiles': the same tiles multiplied by plain FMAs, each invocation a 4x8 block. It runs wherever `shader-f16`
//   exists (the software device too), so the staging, the tile walk and the epilogue are tested everywhere.
//
// `split` (subgroup-matrix only) makes the tensor cores give f32 accuracy: every operand v is staged as two f16s,
// hi = v cut to f16's 11 significand bits and lo = f16((v - hi) * 2^11), so hi + lo * 2^-11 carries about 22 of
// f32's 24 significand bits (lo is scaled so that it stays a normal f16 where v is small: the weights are mostly
// under 0.1). Each fragment product is then three tensor-core products, hi*hi into one f32 accumulator and
// hi*lo + lo*hi into a second, added as c + d * 2^-11 on the way out; lo*lo (2^-22 of the product) is dropped. The
// staging and the accumulators double, the multiplies triple. (The scheme is Ootomo and Yokota's, "Recovering single
// precision accuracy from Tensor Cores while surpassing the FP32 theoretical peak performance", 2022.) Values
// beyond f16's range (65504) are clamped as in the plain kernel.
import { batchedWeights, GEMM_CONV_HEADER, SPLIT_K_RANGE, stagedIm2col } from './conv2d.ts';

export type MmaBody = 'subgroup-matrix' | 'f16-tiles';
/** 'arg': subgroupMatrixLoad<T>(p, off, col_major, stride); 'template': subgroupMatrixLoad<T, col_major>(p, off, stride). */
export type SubgroupMatrixSyntax = 'arg' | 'template';

export interface MmaConvOptions {
  body: MmaBody;
  /** invocations per subgroup the kernel is built for (subgroup-matrix only: the workgroup is `subgroups` of them) */
  subgroupSize?: number;
  syntax?: SubgroupMatrixSyntax;
  /** subgroup-matrix only: S of the device's f16->f32 SxSxS config (16 on NVIDIA, 8 on lavapipe); default 16 */
  fragment?: number;
  /** subgroup-matrix only: the workgroup's output tile, TM pixels x TN channels (default 64 x 64; see mmaTile) */
  TM?: number;
  TN?: number;
  /**
   * Load the next k-step's values (as f16) into registers during the current step's multiplies (default true), as
   * the tiled f32 kernel does; false stages each step after the previous one's barrier.
   */
  prefetch?: boolean;
  /** subgroup-matrix only: f32 accuracy from three f16 products per fragment (hi/lo operand split, see above) */
  split?: boolean;
  /** the device's maxComputeWorkgroupStorageSize: mmaTile refuses a tile that needs more */
  maxWorkgroupBytes?: number;
  /** the batched gather (conv2d.ts batchedIm2col): a step's loads all issued before their values are used */
  batched?: boolean;
  /**
   * subgroup-matrix only: subgroups a workgroup (default 4), as a 2 x (subgroups / 2) grid over the tile. 8 halve
   * each invocation's share of the staging and each subgroup's accumulators, for twice the invocations.
   */
  subgroups?: 4 | 8;
  /**
   * subgroup-matrix with the batched gather only: pad the staged tiles' columns by 8 f16s (16 bytes), so that the
   * columns of a fragment start in different workgroup-memory banks. Unpadded, A's columns are TM f16s apart (256
   * bytes for 128 pixels, a multiple of the 128 bytes that 32 four-byte banks span), so every column of a fragment
   * starts in the same bank, and B's (32 f16s, 64 bytes) in one of two.
   */
  pad?: boolean;
  /**
   * subgroup-matrix only: reduction elements staged a step (default 32). 64 halves the steps, and with them the
   * barriers and the waits for a step's loads, for twice the workgroup memory and staging registers.
   */
  tk?: 32 | 64;
}

/** The f16-tiles body's workgroup tile: TM output pixels x TN output channels, TK reduction elements staged per step. */
export const MMA_TILE = { TM: 64, TN: 64, TK: 32 } as const;

/** Invocations per workgroup for a body. */
export function mmaWorkgroupSize(o: MmaConvOptions): number {
  return o.body === 'subgroup-matrix' ? (o.subgroups ?? 4) * (o.subgroupSize ?? 32) : 128;
}

/**
 * The workgroup tile a kernel is built for, with the reasons a requested one cannot be: the subgroups split it
 * 2 x 2 (four) or 2 x 4 (eight; SGN = subgroups / 2 across the channels), each a grid of FM x FN fragments of S x S
 * (so TM is a multiple of 2S and TN of SGN * S, each at most 8S, to bound the accumulators); the im2col staging
 * gives each invocation one pixel column, so the workgroup's invocations must be a multiple of TM; TK (32, or 64) is a multiple of S and at most the workgroup's invocations (one decodes each k). The
 * split kernel holds two accumulators a fragment, so it takes at most 8 fragments a subgroup (128 x 64 or 64 x 128
 * with 16x16 fragments: 16 f32 accumulator fragments, half an NVIDIA thread's 255 registers; the host's default
 * takes 4, see mmaShape).
 */
export function mmaTile(o: MmaConvOptions): {
  TM: number;
  TN: number;
  TK: number;
  S: number;
  FM: number;
  FN: number;
  SGN: number;
  AP: number;
  BP: number;
} {
  if (o.pad && (o.body !== 'subgroup-matrix' || !o.batched))
    throw new Error('conv2dMmaWgsl: the padded tiles need the subgroup-matrix body and the batched gather');
  if (o.body !== 'subgroup-matrix')
    return { ...MMA_TILE, S: 0, FM: 0, FN: 0, SGN: 0, AP: MMA_TILE.TM, BP: MMA_TILE.TK };
  const S = o.fragment ?? 16;
  const WG = mmaWorkgroupSize(o);
  const NSG = o.subgroups ?? 4;
  if (NSG !== 4 && NSG !== 8) throw new Error(`conv2dMmaWgsl: ${NSG} subgroups a workgroup: 4 or 8`);
  const SGN = NSG / 2; // subgroups across the channels (two across the pixels)
  const TM = o.TM ?? 64;
  const TN = o.TN ?? 64;
  const TK = o.tk ?? 32;
  if (TK !== 32 && TK !== 64) throw new Error(`conv2dMmaWgsl: ${TK} reduction elements a step: 32 or 64`);
  for (const [n, v, per] of [
    ['TM', TM, 2],
    ['TN', TN, SGN],
  ] as const) {
    if (!Number.isInteger(v) || v % (per * S) !== 0 || v > 8 * S)
      throw new Error(
        `conv2dMmaWgsl: ${n} = ${v} must be a multiple of ${per * S} and at most ${8 * S} (fragments of ${S}, ${NSG} subgroups)`,
      );
  }
  if (WG % TM !== 0)
    throw new Error(`conv2dMmaWgsl: TM = ${TM} pixels do not divide the ${WG} invocations of a workgroup`);
  if (o.batched && (TM * TK) / WG > 32)
    throw new Error(
      `conv2dMmaWgsl: a ${TM}x${TK} step is ${(TM * TK) / WG} values an invocation to gather; the batched gather holds at most 32 (use fewer pixels or more subgroups)`,
    );
  const frags = (TM / (2 * S)) * (TN / (SGN * S));
  if (o.split && frags > 8)
    throw new Error(
      `conv2dMmaWgsl: a ${TM}x${TN} tile is ${frags} fragments a subgroup; the split kernel takes at most 8 (two accumulators each)`,
    );
  if (TK % S !== 0 || TK > WG)
    throw new Error(
      `conv2dMmaWgsl: fragments of ${S} with ${WG} invocations cannot stage ${TK} reduction elements a step${TK > WG ? ' (one invocation decodes each: use more subgroups, or 32-deep steps)' : ''}`,
    );
  const P = o.pad ? 8 : 0;
  const bytes = mmaTileBytes({ ...o, TM, TN });
  if (o.maxWorkgroupBytes !== undefined && bytes > o.maxWorkgroupBytes) {
    throw new Error(
      `conv2dMmaWgsl: a ${TM}x${TN} tile${o.split ? ' (split)' : ''} needs ${bytes} bytes of workgroup memory, over this device's ${o.maxWorkgroupBytes}`,
    );
  }
  return { TM, TN, TK, S, FM: TM / (2 * S), FN: TN / (SGN * S), SGN, AP: TM + P, BP: TK + P };
}

/**
 * The workgroup memory a subgroup-matrix tile takes: the staged operands (twice with split; columns padded by 8 f16s
 * with pad), each subgroup's result slices, the im2col decode tables.
 */
export function mmaTileBytes(o: {
  TM: number;
  TN: number;
  fragment?: number;
  subgroups?: 4 | 8;
  split?: boolean;
  pad?: boolean;
  tk?: 32 | 64;
}): number {
  const S = o.fragment ?? 16;
  const TK = o.tk ?? 32;
  const P = o.pad ? 8 : 0;
  const x = o.split ? 2 : 1;
  return x * ((o.TM + P) * TK + o.TN * (TK + P)) * 2 + (o.subgroups ?? 4) * x * S * S * 4 + 5 * TK * 4;
}

/** Load and store spellings for one syntax (the matrices are all column-major in workgroup memory). */
function smOps(syntax: SubgroupMatrixSyntax) {
  return {
    load: (type: string, ptr: string, off: string, stride: string) =>
      syntax === 'arg'
        ? `subgroupMatrixLoad<${type}>(${ptr}, ${off}, true, ${stride})`
        : `subgroupMatrixLoad<${type}, col_major>(${ptr}, ${off}, ${stride})`,
    store: (ptr: string, off: string, value: string, stride: string) =>
      syntax === 'arg'
        ? `subgroupMatrixStore(${ptr}, ${off}, ${value}, true, ${stride})`
        : `subgroupMatrixStore<col_major>(${ptr}, ${off}, ${value}, ${stride})`,
  };
}

/** A minimal kernel using every builtin the conv needs, to find which spelling the device's compiler accepts. */
export function subgroupMatrixProbeWgsl(syntax: SubgroupMatrixSyntax, subgroupSize: number, S = 16): string {
  const { load, store } = smOps(syntax);
  const n = S * S;
  return /* wgsl */ `
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);
@group(0) @binding(0) var<storage, read_write> buf: array<f32>;
var<workgroup> a: array<f16, ${n}>;
var<workgroup> c: array<f32, ${n}>;
@compute @workgroup_size(${subgroupSize})
fn main(@builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_id) sg: u32) {
  for (var i = li; i < ${n}u; i += ${subgroupSize}u) { a[i] = f16(buf[i]); }
  workgroupBarrier();
  let l = ${load(`subgroup_matrix_left<f16, ${S}, ${S}>`, '&a', '0u', `${S}u`)};
  let r = ${load(`subgroup_matrix_right<f16, ${S}, ${S}>`, '&a', '0u', `${S}u`)};
  var acc = subgroup_matrix_result<f32, ${S}, ${S}>();
  acc = subgroupMatrixMultiplyAccumulate(l, r, acc);
  ${store('&c', `sg * ${n}u`, 'acc', `${S}u`)};
  workgroupBarrier();
  for (var i = lane; i < ${n}u; i += ${subgroupSize}u) { buf[i] = c[i]; }
}
`;
}

export function conv2dMmaWgsl(o: MmaConvOptions): string {
  const sm = o.body === 'subgroup-matrix';
  // AP, BP: the column strides of the staged A and B tiles in workgroup memory (TM and TK, or padded)
  const { TM, TN, TK, S, FM, FN, SGN, AP, BP } = mmaTile(o);
  const NSG = 2 * SGN;
  const WG = mmaWorkgroupSize(o);
  const SG = o.subgroupSize ?? 32;
  const prefetch = o.prefetch ?? true;
  const split = !!o.split;
  if (split && !sm) throw new Error('conv2dMmaWgsl: the split (f32-accurate) form needs the subgroup-matrix body');
  const PA = (TM * TK) / WG; // staged values per invocation and step
  const PB = (TN * TK) / WG;
  if (!Number.isInteger(PB))
    throw new Error(`conv2dMmaWgsl: ${WG} invocations do not stage a ${TN}-channel tile evenly`);
  const half = (v: string) => `f16(clamp(${v}, -65504.0, 65504.0))`;
  // one value into its f16 slot, and with split its scaled remainder into the matching lo slot. hi is cut from v's
  // bits (the top 11 of the significand), not taken as f32(f16(v)): compilers fold that round trip to v where they
  // may (lavapipe's does), which would leave lo = 0. Below f16's smallest normal hi is 0 and lo takes all of v, so
  // whether the device flushes f16 subnormals does not matter.
  const put = (dst: (arr: string) => string, hiArr: string, loArr: string, v: string) =>
    split
      ? `{ let sv = clamp(${v}, -65504.0, 65504.0);
        var shi = bitcast<f32>(bitcast<u32>(sv) & 0xffffe000u);
        if (abs(shi) < 6.103515625e-5) { shi = 0.0; }
        ${dst(hiArr)} = f16(shi); ${dst(loArr)} = ${half(`(${v} - shi) * 2048.0`)}; }`
      : `${dst(hiArr)} = ${half(v)};`;
  // the prefetch registers hold f16s, or with split the f32 values themselves (one register where hi and lo would
  // take two), split as they go into workgroup memory
  let g: ReturnType<typeof stagedIm2col>;
  let load: string;
  let stage: string;
  let regs = '';
  if (o.batched) {
    // raw f32 values in registers (conv2d.ts batchedIm2col); normalised, split or rounded as they are stored
    g = stagedIm2col({
      TM,
      TK,
      WG,
      batched: true,
      store: (kk, mm, v) => put((a) => `${a}[${kk} * ${AP}u + ${mm}]`, 'As', 'Al', v),
    });
    const w = batchedWeights({ PB, WG, TK });
    regs = w.regs;
    load = `
${g.decode}
    // consecutive invocations gather consecutive pixels of one reduction row
${g.gather}
${w.load}`;
    const store = `${g.finish}
${w.stage((idx, kb, nn, v) => put((a) => `${a}[${BP === TK ? idx : `${nn} * ${BP}u + ${kb}`}]`, 'Bs', 'Bl', v))}`;
    stage = prefetch
      ? `
    // the values loaded during the previous step (or before the loop) into workgroup memory
${store}
    workgroupBarrier();
    // the next step's loads, in flight during this step's multiplies (a uniform branch: its barriers are fine)
    if (k0 + ${TK}u < kEnd) {
      let k0 = k0 + ${TK}u;
${load}
    }`
      : `${load}
${store}
    workgroupBarrier();`;
  } else {
    const reg = split ? 'f32' : 'f16';
    regs = prefetch ? `  var ra: array<${reg}, ${PA}>;\n  var rb: array<${reg}, ${PB}>;` : '';
    const toReg = (r: string) => (v: string) => (split ? `${r}[e] = ${v};` : put((a) => `${a}[e]`, r, '', v));
    g = stagedIm2col({
      TM,
      TK,
      WG,
      store: prefetch
        ? (_kk, _mm, v) => toReg('ra')(v)
        : (kk, mm, v) => put((a) => `${a}[${kk} * ${TM}u + ${mm}]`, 'As', 'Al', v),
    });
    // the weights of one k-step, B [TK x TN] column-major: consecutive invocations read consecutive weights of a channel
    const weights = prefetch ? toReg('rb') : (v: string) => put((a) => `${a}[idx]`, 'Bs', 'Bl', v);
    load = `
${g.decode}
    // consecutive invocations gather consecutive pixels of one reduction row
${g.gather}
    for (var e = 0u; e < ${PB}u; e++) {
      let idx = li + e * ${WG}u;
      let nn = idx / ${TK}u;
      let kb = idx - nn * ${TK}u;
      let k = k0 + kb;
      let co = n0 + nn;
      var w = 0.0;
      if (k < K && co < p.Cout) { w = params[p.wOff + co * K + k]; }
      ${weights('w')}
    }`;
    stage = prefetch
      ? `
    // the values prefetched during the previous step (or before the loop) into workgroup memory
    for (var e = 0u; e < ${PA}u; e++) {
      let t = (skk0 + e * ${WG / TM}u) * ${TM}u + smm;
      ${split ? put((a) => `${a}[t]`, 'As', 'Al', 'ra[e]') : 'As[t] = ra[e];'}
    }
    for (var e = 0u; e < ${PB}u; e++) {
      let t = li + e * ${WG}u;
      ${split ? put((a) => `${a}[t]`, 'Bs', 'Bl', 'rb[e]') : 'Bs[t] = rb[e];'}
    }
    workgroupBarrier();
    // the next step's loads, in flight during this step's multiplies (a uniform branch: its barriers are fine)
    if (k0 + ${TK}u < kEnd) {
      let k0 = k0 + ${TK}u;
${load}
    }`
      : `${load}
    workgroupBarrier();`;
  }

  let compute: string;
  let store: string;
  let decl: string;
  let result: string;
  const range = (n: number) => [...Array(n).keys()];
  if (sm) {
    const { load, store: st } = smOps(o.syntax ?? 'template');
    const L = `subgroup_matrix_left<f16, ${S}, ${S}>`;
    const R = `subgroup_matrix_right<f16, ${S}, ${S}>`;
    const C = `subgroup_matrix_result<f32, ${S}, ${S}>`;
    // subgroup s owns result rows (pixels) [TM/2 * (s%2), +TM/2) and columns (channels) [TN/SGN * (s/2), +TN/SGN):
    // FM x FN fragments of S x S, c_i_j at rows rm + i*S, columns rn + j*S
    decl = `
  let rm = (sg % 2u) * ${TM / 2}u;
  let rn = (sg / 2u) * ${TN / SGN}u;
${range(FM)
  .flatMap((i) => range(FN).map((j) => `  var c_${i}_${j} = ${C}();${split ? ` var d_${i}_${j} = ${C}();` : ''}`))
  .join('\n')}`;
    compute = `
    for (var ks = 0u; ks < ${TK}u; ks += ${S}u) {
      // A tile [TM x TK] column-major (stride TM), B tile [TK x TN] column-major (stride TK)
${range(FM)
  .map((i) => `      let a${i} = ${load(L, '&As', `ks * ${AP}u + rm + ${i * S}u`, `${AP}u`)};`)
  .join('\n')}
${range(FN)
  .map((j) => `      let b${j} = ${load(R, '&Bs', `(rn + ${j * S}u) * ${BP}u + ks`, `${BP}u`)};`)
  .join('\n')}
${
  split
    ? range(FM)
        .map((i) => `      let al${i} = ${load(L, '&Al', `ks * ${AP}u + rm + ${i * S}u`, `${AP}u`)};`)
        .join('\n')
    : ''
}
${
  split
    ? range(FN)
        .map((j) => `      let bl${j} = ${load(R, '&Bl', `(rn + ${j * S}u) * ${BP}u + ks`, `${BP}u`)};`)
        .join('\n')
    : ''
}
${range(FM)
  .flatMap((i) =>
    range(FN).map(
      (j) =>
        `      c_${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, c_${i}_${j});${
          split
            ? `
      d_${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, bl${j}, d_${i}_${j});
      d_${i}_${j} = subgroupMatrixMultiplyAccumulate(al${i}, b${j}, d_${i}_${j});`
            : ''
        }`,
    ),
  )
  .join('\n')}
    }`;
    // the epilogue, a fragment at a time through each subgroup's own S x S slice of Cs (column-major, stride S): the
    // barriers are in uniform control flow (every subgroup walks the same fragments)
    // (split: the two accumulators through two slices, combined as c + d * 2^-11)
    const SL = (split ? 2 : 1) * S * S;
    store = range(FM)
      .flatMap((i) =>
        range(FN).map(
          (j) => `
  ${st('&Cs', `sg * ${SL}u`, `c_${i}_${j}`, `${S}u`)};${
    split
      ? `
  ${st('&Cs', `sg * ${SL}u + ${S * S}u`, `d_${i}_${j}`, `${S}u`)};`
      : ''
  }
  workgroupBarrier();
  for (var e = lane; e < ${S * S}u; e += ${SG}u) {
    let nn = e / ${S}u;
    let m = m0 + rm + ${i * S}u + (e - nn * ${S}u);
    let co = n0 + rn + ${j * S}u + nn;
    if (m < M && co < p.Cout) { writeOut(b, split, co, m, M, ${split ? `Cs[sg * ${SL}u + e] + Cs[sg * ${SL}u + ${S * S}u + e] * ${2 ** -11}` : `Cs[sg * ${SL}u + e]`}); }
  }
  workgroupBarrier();`,
        ),
      )
      .join('');
    result = `var<workgroup> Cs: array<f32, ${NSG * SL}>; // each subgroup's S x S result fragment${split ? 's (hi and correction)' : ''} on its way out`;
  } else {
    // 128 invocations, each 4 pixels x 8 channels of the 64x64 tile
    decl = `
  let tm = (li % 16u) * 4u;
  let tn = (li / 16u) * 8u;
  var acc: array<array<f32, 8>, 4>;`;
    compute = `
    for (var kk = 0u; kk < ${TK}u; kk++) {
      var a: array<f32, 4>;
      var w: array<f32, 8>;
      for (var i = 0u; i < 4u; i++) { a[i] = f32(As[kk * ${TM}u + tm + i]); }
      for (var j = 0u; j < 8u; j++) { w[j] = f32(Bs[(tn + j) * ${TK}u + kk]); }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 8u; j++) { acc[i][j] = fma(a[i], w[j], acc[i][j]); }
      }
    }`;
    store = `
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 8u; j++) { Cs[(tn + j) * ${TM}u + tm + i] = acc[i][j]; }
  }
  workgroupBarrier();
  for (var idx = li; idx < ${TM * TN}u; idx += ${WG}u) {
    let nn = idx / ${TM}u;
    let mm = idx - nn * ${TM}u;
    let m = m0 + mm;
    let co = n0 + nn;
    if (m >= M || co >= p.Cout) { continue; }
    writeOut(b, split, co, m, M, Cs[idx]);
  }`;
    result = `var<workgroup> Cs: array<f32, ${TM * TN}>; // [TN][TM]: the f32 result tile`;
  }

  return /* wgsl */ `
enable f16;
${
  sm
    ? `enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);`
    : ''
}
${GEMM_CONV_HEADER}

var<workgroup> As: array<f16, ${AP * TK}>; // [TK][TM]: column-major A (pixels x reduction), columns ${AP} apart
var<workgroup> Bs: array<f16, ${TN * BP}>; // [TN][TK]: column-major B (reduction x channels), columns ${BP} apart
${
  split
    ? `var<workgroup> Al: array<f16, ${AP * TK}>; // the operands' scaled remainders, laid out as As and Bs
var<workgroup> Bl: array<f16, ${TN * BP}>;`
    : ''
}
${result}
${g.decl}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u,
        @builtin(local_invocation_index) li: u32${
          sm
            ? `,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_id) sg: u32`
            : ''
        }) {
  let M = p.Hout * p.Wout;
  let K = (p.C1 + p.C2) * KS * KS;
${SPLIT_K_RANGE}
  let m0 = wg.x * ${TM}u;
  let n0 = wg.y * ${TN}u;
${decl}
${g.setup}
${
  prefetch
    ? `${regs}
  if (kBeg < kEnd) {
    let k0 = kBeg;
${load}
  }`
    : regs
}
  for (var k0 = kBeg; k0 < kEnd; k0 += ${TK}u) {
${stage}
${compute}
    workgroupBarrier();
  }
${store}
}
`;
}
