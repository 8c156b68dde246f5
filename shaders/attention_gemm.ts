// Self-attention as two GEMMs and a softmax, for GPUs (shaders/attention.ts is the flash-style form, tuned for CPU
// devices, whose one workgroup per 16 queries leaves a large GPU mostly idle at the U-Net's attention resolutions:
// 16 workgroups at 16x16, each walking 512 channels serially per score).
//   scores  S[b, i, j] = scale * sum_c q[c, i] k[c, j]         (HW x HW per batch element, in a scratch buffer)
//   softmax P[b, i, :] = softmax(S[b, i, :])                   (in place, one workgroup a row)
//   output  out[b, c, i] = sum_j P[b, i, j] v[c, j]
// Both products run on one strided batched GEMM kernel: C(m, n) = alpha * sum_k A(k, m) B(k, n), each operand
// addressed as base + batch * strideBatch + row * strideRow + col * strideCol, so q, k, v and P are read where they
// are, with no transposes. Tiles of 64 x 64 outputs, 16 reduction elements staged at a time, 4 x 4 outputs per
// invocation. f32 throughout: the result is the flash form's to rounding.
import { uniformLayout } from './uniform.ts';

// The kernels' uniforms, each declared once for the WGSL struct and the host's packer (shaders/uniform.ts).
/** STRIDED_GEMM_WGSL's uniform: sizes, alpha, and per operand an offset and batch / reduction / row-or-column strides. */
export const STRIDED_GEMM_UNIFORM = uniformLayout('P', {
  M: 'u32',
  N: 'u32',
  K: 'u32',
  alpha: 'f32',
  aOff: 'u32',
  aB: 'u32',
  aK: 'u32',
  aM: 'u32',
  bOff: 'u32',
  bB: 'u32',
  bK: 'u32',
  bN: 'u32',
  cOff: 'u32',
  cB: 'u32',
  cM: 'u32',
  cN: 'u32',
});

/** ROW_SOFTMAX_WGSL's uniform. */
export const ROW_SOFTMAX_UNIFORM = uniformLayout('P', {
  rows: 'u32',
  HW: 'u32',
});

export const STRIDED_GEMM_WGSL = /* wgsl */ `
${STRIDED_GEMM_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> Bm: array<f32>;
@group(0) @binding(2) var<storage, read_write> Cm: array<f32>;
@group(0) @binding(3) var<uniform> p: P;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;
var<workgroup> As: array<f32, 1024>; // [TK][TM]
var<workgroup> Bs: array<f32, 1024>; // [TK][TN]

// Element idx of a 16 x 64 tile to stage, as (k, m): consecutive idx along m where the operand's m stride is 1,
// else along k, so consecutive invocations read consecutive addresses either way
fn slot(idx: u32, alongM: bool) -> vec2u {
  if (alongM) { return vec2u(idx / 64u, idx % 64u); }
  return vec2u(idx % TK, idx / TK);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let m0 = wg.x * TM;
  let n0 = wg.y * TN;
  let b = wg.z;
  let aBase = p.aOff + b * p.aB;
  let bBase = p.bOff + b * p.bB;
  // each invocation: 4 rows (m) x 4 columns (n) of the tile
  let tm = (li % 16u) * 4u;
  let tn = (li / 16u) * 4u;
  var acc: array<vec4f, 4>;
  for (var k0 = 0u; k0 < p.K; k0 += TK) {
    // stage A(k, m) and B(k, n), each along whichever index is contiguous in memory
    for (var r = 0u; r < 4u; r++) {
      let idx = li + r * 256u;
      let sa = slot(idx, p.aM == 1u);
      var v = 0.0;
      if (k0 + sa.x < p.K && m0 + sa.y < p.M) { v = A[aBase + (k0 + sa.x) * p.aK + (m0 + sa.y) * p.aM]; }
      As[sa.x * TM + sa.y] = v;
      let sb = slot(idx, p.bN == 1u);
      var w = 0.0;
      if (k0 + sb.x < p.K && n0 + sb.y < p.N) { w = Bm[bBase + (k0 + sb.x) * p.bK + (n0 + sb.y) * p.bN]; }
      Bs[sb.x * TN + sb.y] = w;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      let a = vec4f(As[kk * TM + tm], As[kk * TM + tm + 1u], As[kk * TM + tm + 2u], As[kk * TM + tm + 3u]);
      let w = vec4f(Bs[kk * TN + tn], Bs[kk * TN + tn + 1u], Bs[kk * TN + tn + 2u], Bs[kk * TN + tn + 3u]);
      for (var i = 0u; i < 4u; i++) { acc[i] = fma(vec4f(a[i]), w, acc[i]); }
    }
    workgroupBarrier();
  }
  let cBase = p.cOff + b * p.cB;
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + tm + i;
    if (m >= p.M) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + tn + j;
      if (n < p.N) { Cm[cBase + m * p.cM + n * p.cN] = p.alpha * acc[i][j]; }
    }
  }
}
`;

/** softmax over each row of S [rows, HW] in place: one workgroup of 64 a row (max, sum of exponentials, scale). */
export const ROW_SOFTMAX_WGSL = /* wgsl */ `
${ROW_SOFTMAX_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read_write> S: array<f32>;
@group(0) @binding(1) var<uniform> p: P;
var<workgroup> red: array<f32, 64>;

fn reduce(li: u32, v: f32, isMax: bool) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s = s / 2u) {
    if (li < s) { red[li] = select(red[li] + red[li + s], max(red[li], red[li + s]), isMax); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let row = wg.x + wg.y * 65535u;
  if (row >= p.rows) { return; }
  let base = row * p.HW;
  var m = -3.0e38;
  for (var j = li; j < p.HW; j += 64u) { m = max(m, S[base + j]); }
  m = reduce(li, m, true);
  var s = 0.0;
  for (var j = li; j < p.HW; j += 64u) {
    let e = exp(S[base + j] - m);
    S[base + j] = e;
    s += e;
  }
  let inv = 1.0 / reduce(li, s, false);
  for (var j = li; j < p.HW; j += 64u) { S[base + j] = S[base + j] * inv; }
}
`;
