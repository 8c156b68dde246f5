// conv2d as an implicit GEMM with f16 operands and f32 accumulation: the mixed-precision path for GPUs.
// M = output pixels, N = output channels, K = Cin * KS * KS, as in conv2d.ts, with the same fusions (skip concatenation,
// nearest-x2 upsampling, GroupNorm(+Swish) on the input load; bias, embedding and residual on the write) and the same
// uniform layout, so the host side is shared. Inputs, weights and outputs stay f32 in memory: the im2col gather
// rounds each (normalised) input and each weight to f16 as it stages them in workgroup memory, the products are exact
// in f32 and are summed in f32. Only the operands lose precision (11-bit significands; values beyond f16's range
// are clamped to +-65504 rather than becoming infinite).
//
// Two bodies over the same staging and epilogue:
// - 'subgroup-matrix': each subgroup multiplies 16x16x16 f16 tiles into f32 result tiles with the
//   chromium-experimental-subgroup-matrix builtins (tensor cores on NVIDIA). Two spellings of the builtins exist
//   across Dawn versions (`col_major` as a bool argument, or as a template parameter); `syntax` picks one and the host
//   probes which one the device's compiler takes.
// - 'f16-tiles': the same tiles multiplied by plain FMAs, each invocation a 4x8 block. It runs wherever `shader-f16`
//   exists (the software device too), so the staging, the tile walk and the epilogue are tested everywhere.
import { GEMM_CONV_HEADER, SPLIT_K_RANGE, stagedIm2col } from './conv2d.ts';

export type MmaBody = 'subgroup-matrix' | 'f16-tiles';
/** 'arg': subgroupMatrixLoad<T>(p, off, col_major, stride); 'template': subgroupMatrixLoad<T, col_major>(p, off, stride). */
export type SubgroupMatrixSyntax = 'arg' | 'template';

/**
 * How a subgroup knows which tiles are its own: 'builtin' reads @builtin(subgroup_id) (newer Dawn); 'index' takes
 * local_invocation_index / subgroup size, which relies on full subgroups being consecutive invocations (Dawn requires
 * full subgroups for subgroup matrices; the mma tests on the device check the result either way).
 */
export type SubgroupIdSource = 'builtin' | 'index';

export interface MmaConvOptions {
  body: MmaBody;
  /** invocations per subgroup the kernel is built for (subgroup-matrix only: the workgroup is 4 subgroups) */
  subgroupSize?: number;
  syntax?: SubgroupMatrixSyntax;
  subgroupId?: SubgroupIdSource;
}

function subgroupIdParam(src: SubgroupIdSource): string {
  return src === 'builtin' ? ',\n        @builtin(subgroup_id) sgid: u32' : '';
}
function subgroupIdLet(src: SubgroupIdSource, subgroupSize: number): string {
  return src === 'builtin' ? '  let sg = sgid;' : `  let sg = li / ${subgroupSize}u;`;
}

/** Workgroup tile: TM output pixels x TN output channels, TK reduction elements staged per step. */
export const MMA_TILE = { TM: 64, TN: 64, TK: 32 } as const;

/** Invocations per workgroup for a body. */
export function mmaWorkgroupSize(o: MmaConvOptions): number {
  return o.body === 'subgroup-matrix' ? 4 * (o.subgroupSize ?? 32) : 128;
}

/** Load and store spellings for one syntax (the matrices are all column-major in workgroup memory). */
function smOps(syntax: SubgroupMatrixSyntax) {
  return {
    load: (type: string, ptr: string, off: string, stride: string) =>
      syntax === 'arg' ? `subgroupMatrixLoad<${type}>(${ptr}, ${off}, true, ${stride})` : `subgroupMatrixLoad<${type}, col_major>(${ptr}, ${off}, ${stride})`,
    store: (ptr: string, off: string, value: string, stride: string) =>
      syntax === 'arg' ? `subgroupMatrixStore(${ptr}, ${off}, ${value}, true, ${stride})` : `subgroupMatrixStore<col_major>(${ptr}, ${off}, ${value}, ${stride})`,
  };
}

/** A minimal kernel using every builtin the conv needs, to find which spelling the device's compiler accepts. */
export function subgroupMatrixProbeWgsl(syntax: SubgroupMatrixSyntax, subgroupSize: number, subgroupId: SubgroupIdSource = 'builtin'): string {
  const { load, store } = smOps(syntax);
  return /* wgsl */ `
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);
@group(0) @binding(0) var<storage, read_write> buf: array<f32>;
var<workgroup> a: array<f16, 256>;
var<workgroup> c: array<f32, 256>;
@compute @workgroup_size(${subgroupSize})
fn main(@builtin(local_invocation_index) li: u32${subgroupIdParam(subgroupId)}) {
${subgroupIdLet(subgroupId, subgroupSize)}
  for (var i = li; i < 256u; i += ${subgroupSize}u) { a[i] = f16(buf[i]); }
  workgroupBarrier();
  let l = ${load('subgroup_matrix_left<f16, 16, 16>', '&a', '0u', '16u')};
  let r = ${load('subgroup_matrix_right<f16, 16, 16>', '&a', '0u', '16u')};
  var acc = subgroup_matrix_result<f32, 16, 16>();
  acc = subgroupMatrixMultiplyAccumulate(l, r, acc);
  ${store('&c', 'sg * 0u', 'acc', '16u')};
  workgroupBarrier();
  for (var i = li; i < 256u; i += ${subgroupSize}u) { buf[i] = c[i]; }
}
`;
}

export function conv2dMmaWgsl(o: MmaConvOptions): string {
  const { TM, TN, TK } = MMA_TILE;
  const WG = mmaWorkgroupSize(o);
  const sm = o.body === 'subgroup-matrix';
  const g = stagedIm2col({ TM, TK, WG, store: (kk, mm, v) => `As[${kk} * ${TM}u + ${mm}] = f16(clamp(${v}, -65504.0, 65504.0));` });
  if (sm && (TM !== 64 || TN !== 64 || TK % 16 !== 0)) throw new Error('conv2dMmaWgsl: the subgroup walk assumes 64x64 tiles');

  let compute: string;
  let store: string;
  let decl: string;
  if (sm) {
    const { load, store: st } = smOps(o.syntax ?? 'template');
    // subgroup s owns result rows (pixels) [32*(s%2), +32) and columns (channels) [32*(s/2), +32): 2x2 tiles of 16x16
    decl = `
  let rm = (sg % 2u) * 32u;
  let rn = (sg / 2u) * 32u;
  var c00 = subgroup_matrix_result<f32, 16, 16>();
  var c01 = subgroup_matrix_result<f32, 16, 16>();
  var c10 = subgroup_matrix_result<f32, 16, 16>();
  var c11 = subgroup_matrix_result<f32, 16, 16>();`;
    const L = 'subgroup_matrix_left<f16, 16, 16>';
    const R = 'subgroup_matrix_right<f16, 16, 16>';
    compute = `
    for (var ks = 0u; ks < ${TK}u; ks += 16u) {
      // A tile [TM x TK] column-major (stride TM), B tile [TK x TN] column-major (stride TK)
      let a0 = ${load(L, '&As', `ks * ${TM}u + rm`, `${TM}u`)};
      let a1 = ${load(L, '&As', `ks * ${TM}u + rm + 16u`, `${TM}u`)};
      let b0 = ${load(R, '&Bs', `rn * ${TK}u + ks`, `${TK}u`)};
      let b1 = ${load(R, '&Bs', `(rn + 16u) * ${TK}u + ks`, `${TK}u`)};
      c00 = subgroupMatrixMultiplyAccumulate(a0, b0, c00);
      c01 = subgroupMatrixMultiplyAccumulate(a0, b1, c01);
      c10 = subgroupMatrixMultiplyAccumulate(a1, b0, c10);
      c11 = subgroupMatrixMultiplyAccumulate(a1, b1, c11);
    }`;
    // the result tile [TM x TN] column-major (stride TM) in workgroup memory, for the epilogue
    store = `
  ${st('&Cs', `rn * ${TM}u + rm`, 'c00', `${TM}u`)};
  ${st('&Cs', `(rn + 16u) * ${TM}u + rm`, 'c01', `${TM}u`)};
  ${st('&Cs', `rn * ${TM}u + rm + 16u`, 'c10', `${TM}u`)};
  ${st('&Cs', `(rn + 16u) * ${TM}u + rm + 16u`, 'c11', `${TM}u`)};`;
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
  }`;
  }

  return /* wgsl */ `
enable f16;
${sm ? `enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);` : ''}
${GEMM_CONV_HEADER}

var<workgroup> As: array<f16, ${TM * TK}>; // [TK][TM]: column-major A (pixels x reduction)
var<workgroup> Bs: array<f16, ${TN * TK}>; // [TN][TK]: column-major B (reduction x channels)
var<workgroup> Cs: array<f32, ${TM * TN}>; // [TN][TM]: the f32 result tile
${g.decl}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u,
        @builtin(local_invocation_index) li: u32${sm ? subgroupIdParam(o.subgroupId ?? 'builtin') : ''}) {
${sm ? subgroupIdLet(o.subgroupId ?? 'builtin', o.subgroupSize ?? 32) : ''}
  let M = p.Hout * p.Wout;
  let K = (p.C1 + p.C2) * KS * KS;
${SPLIT_K_RANGE}
  let m0 = wg.x * ${TM}u;
  let n0 = wg.y * ${TN}u;
${decl}
${g.setup}
  for (var k0 = kBeg; k0 < kEnd; k0 += ${TK}u) {
${g.decode}
    // consecutive invocations gather consecutive pixels of one reduction row, and consecutive weights of one channel
${g.gather}
    for (var idx = li; idx < ${TN * TK}u; idx += ${WG}u) {
      let nn = idx / ${TK}u;
      let kb = idx - nn * ${TK}u;
      let k = k0 + kb;
      let co = n0 + nn;
      var w = 0.0;
      if (k < K && co < p.Cout) { w = params[p.wOff + co * K + k]; }
      Bs[idx] = f16(clamp(w, -65504.0, 65504.0));
    }
    workgroupBarrier();
${compute}
    workgroupBarrier();
  }
${store}
  workgroupBarrier();
  for (var idx = li; idx < ${TM * TN}u; idx += ${WG}u) {
    let nn = idx / ${TM}u;
    let mm = idx - nn * ${TM}u;
    let m = m0 + mm;
    let co = n0 + nn;
    if (m >= M || co >= p.Cout) { continue; }
    writeOut(b, split, co, m, M, Cs[idx]);
  }
}
`;
}
