// Backward of the fused conv2d (shaders/conv2d.ts). The forward is
//   out[b, co, m] = bias[co] + emb[b, co] + res[b, co, m] + sum_k W[co, k] * A[b, k, m]
// with A the implicit im2col of f(cat(inA, inB)), f = GroupNorm(+Swish) (optional), then nearest-x2 upsampling
// (optional), zero padding KS/2, stride 1 or 2. Its gradients:
//   dW[co, k]   = sum_{b, m} dOut[b, co, m] * A[b, k, m]            CONV2D_DW_WGSL (+ SPLIT_REDUCE_WGSL)
//   dBias[co]   = sum_{b, m} dOut[b, co, m],  dEmb[b, co] = sum_m dOut  CHANNEL_SUM_WGSL
//   dRes        = dOut (the caller passes the same buffer on, or adds it with ADD_WGSL)
//   dIn[b, ci, sy, sx] = gradient w.r.t. the conv's input *as stored* (before the upsample, summed over the 2x2 block
//   it was copied to): w.r.t. f(cat(A, B)) when the forward normalised, to be turned into dA / dB by the GroupNorm
//   backward; w.r.t. A and B directly otherwise.                       CONV2D_DX_WGSL
// Every writer has an `accumulate` flag: 0 overwrites its destination, 1 adds into it (a tensor that feeds two
// consumers: skip connections, residuals, the shared noise embedding). Flags and shape variants (kernel size, stride,
// upsample, norm) are uniforms rather than override constants: one pipeline per kernel, because each variant costs
// seconds of shader compilation on software Vulkan and the branches are uniform across a dispatch.

import { IM2COL_ELEMENT } from './conv2d.ts';

/** Input gradient as an implicit GEMM: M = stored input pixels, N = input channels, K = Cout * KS * KS * (4 if upsampled). */
export const CONV2D_DX_WGSL = /* wgsl */ `
struct P {
  B: u32, C1: u32, C2: u32, Hin: u32,
  Win: u32, Hout: u32, Wout: u32, Cout: u32,
  wOff: u32, ks: u32, stride: u32, upsample: u32,
  accumulate: u32, _a: u32, _b: u32, _c: u32,
}

@group(0) @binding(0) var<storage, read> params: array<f32>;
@group(0) @binding(1) var<storage, read> dOut: array<f32>;
@group(0) @binding(2) var<storage, read_write> dA: array<f32>;
@group(0) @binding(3) var<storage, read_write> dB: array<f32>;
@group(0) @binding(4) var<uniform> p: P;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;
const PN: u32 = 65u;  // padded row of Bs: the loads store down a column, one bank per thread
var<workgroup> As: array<f32, 1024>; // [TK][TM]
var<workgroup> Bs: array<f32, 1040>; // [TK][PN]

fn U() -> u32 { if (p.upsample != 0u) { return 4u; } return 1u; }

// dOut at the output pixel that reads stored input pixel m through tap (ky, kx) (and upsample sub-pixel u), or 0.
fn loadG(b: u32, k: u32, m: u32, M: u32, K: u32) -> f32 {
  if (k >= K || m >= M) { return 0.0; }
  let KS = p.ks;
  let STRIDE = p.stride;
  let KK = KS * KS;
  let per = KK * U();
  let co = k / per;
  let r2 = k - co * per;
  let r = r2 / U();
  let u = r2 - r * U();
  let ky = r / KS;
  let kx = r - ky * KS;
  let sy = m / p.Win;
  let sx = m - sy * p.Win;
  var iy = sy;
  var ix = sx;
  if (p.upsample != 0u) { iy = 2u * sy + u / 2u; ix = 2u * sx + (u & 1u); }
  let pad = i32(KS / 2u);
  let ty = i32(iy) + pad - i32(ky);
  let tx = i32(ix) + pad - i32(kx);
  if (ty < 0 || tx < 0) { return 0.0; }
  if (u32(ty) % STRIDE != 0u || u32(tx) % STRIDE != 0u) { return 0.0; }
  let oy = u32(ty) / STRIDE;
  let ox = u32(tx) / STRIDE;
  if (oy >= p.Hout || ox >= p.Wout) { return 0.0; }
  return dOut[(b * p.Cout + co) * p.Hout * p.Wout + oy * p.Wout + ox];
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u,
        @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let M = p.Hin * p.Win;
  let Cin = p.C1 + p.C2;
  let KK = p.ks * p.ks;
  let K = p.Cout * KK * U();
  let b = wg.z;
  let m0 = wg.x * TM;
  let n0 = wg.y * TN;
  let tm = lid.x * 4u;
  let tn = lid.y * 4u;
  var acc: array<array<f32, 4>, 4>;
  for (var k0 = 0u; k0 < K; k0 += TK) {
    for (var e = 0u; e < 4u; e++) {
      let idx = li + e * 256u;
      let kk = idx / TM;
      let mm = idx - kk * TM;
      As[idx] = loadG(b, k0 + kk, m0 + mm, M, K);
      let nn = idx / TK;
      let kb = idx - nn * TK;
      let k = k0 + kb;
      let ci = n0 + nn;
      var w = 0.0;
      if (k < K && ci < Cin) {
        let per = KK * U();
        let co = k / per;
        let r = (k - co * per) / U();
        w = params[p.wOff + (co * Cin + ci) * KK + r];
      }
      Bs[kb * PN + nn] = w;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      var a: array<f32, 4>;
      var bw: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) { a[i] = As[kk * TM + tm + i]; }
      for (var j = 0u; j < 4u; j++) { bw[j] = Bs[kk * PN + tn + j]; }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i][j] = fma(a[i], bw[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + tm + i;
    if (m >= M) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let ci = n0 + tn + j;
      if (ci >= Cin) { continue; }
      let v = acc[i][j];
      if (ci < p.C1) {
        let o = (b * p.C1 + ci) * M + m;
        if (p.accumulate != 0u) { dA[o] = dA[o] + v; } else { dA[o] = v; }
      } else {
        let o = (b * p.C2 + (ci - p.C1)) * M + m;
        if (p.accumulate != 0u) { dB[o] = dB[o] + v; } else { dB[o] = v; }
      }
    }
  }
}
`;

/**
 * Weight gradient as a GEMM over the [Cout, K] weight matrix, reducing over (batch, output pixel). The input tile is
 * the forward's own im2col load (GroupNorm/Swish, upsample, concatenation recomputed, never stored). With `split` the
 * reduction is cut into gridDim.z slices, each writing a partial [Cout, K] into `outp` at slice * Cout * K (summed by
 * SPLIT_REDUCE_WGSL); without, the result goes to outp[wOff + co * K + k].
 */
export const CONV2D_DW_WGSL = /* wgsl */ `
struct P {
  B: u32, C1: u32, C2: u32, Hin: u32,
  Win: u32, Hout: u32, Wout: u32, Cout: u32,
  G: u32, wOff: u32, gOff: u32, betaOff: u32,
  statsOff: u32, chunk: u32, ks: u32, stride: u32,
  upsample: u32, norm: u32, split: u32, accumulate: u32,
}

@group(0) @binding(0) var<storage, read> params: array<f32>;
@group(0) @binding(1) var<storage, read> inA: array<f32>;
@group(0) @binding(2) var<storage, read> inB: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read> dOut: array<f32>;
@group(0) @binding(5) var<storage, read_write> outp: array<f32>;
@group(0) @binding(6) var<uniform> p: P;

const TM: u32 = 64u;  // output channels per tile
const TN: u32 = 64u;  // K (input channel x tap) per tile
const TK: u32 = 16u;  // reduction step (batch x output pixel)
const PAD: u32 = 65u;  // padded rows: the loads store down columns, one bank per thread
var<workgroup> As: array<f32, 1040>; // [TK][PAD]
var<workgroup> Bs: array<f32, 1040>; // [TK][PAD]

// The forward's im2col element (shaders/conv2d.ts loadA), for output pixel m and K index k of batch b.
fn loadA(b: u32, k: u32, m: u32) -> f32 {
  let KS = p.ks;
  let STRIDE = p.stride;
  let UPSAMPLE = p.upsample != 0u;
  let NORM = p.norm;
${IM2COL_ELEMENT}}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u,
        @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let M = p.Hout * p.Wout;
  let K = (p.C1 + p.C2) * p.ks * p.ks;
  let R = p.B * M;
  let rStart = wg.z * p.chunk;
  let rEnd = min(R, rStart + p.chunk);
  let n0 = wg.x * TN;
  let c0 = wg.y * TM;
  let tm = lid.x * 4u;
  let tn = lid.y * 4u;
  var acc: array<array<f32, 4>, 4>;
  for (var r0 = rStart; r0 < rEnd; r0 += TK) {
    for (var e = 0u; e < 4u; e++) {
      let idx = li + e * 256u;
      let cc = idx / TK;
      let rr = idx - cc * TK;
      let r = r0 + rr;
      var g = 0.0;
      var a = 0.0;
      if (r < rEnd) {
        let b = r / M;
        let m = r - b * M;
        let co = c0 + cc;
        if (co < p.Cout) { g = dOut[(b * p.Cout + co) * M + m]; }
        let k = n0 + cc;
        if (k < K) { a = loadA(b, k, m); }
      }
      As[rr * PAD + cc] = g;
      Bs[rr * PAD + cc] = a;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      var a: array<f32, 4>;
      var bw: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) { a[i] = As[kk * PAD + tm + i]; }
      for (var j = 0u; j < 4u; j++) { bw[j] = Bs[kk * PAD + tn + j]; }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i][j] = fma(a[i], bw[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let co = c0 + tm + i;
    if (co >= p.Cout) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let k = n0 + tn + j;
      if (k >= K) { continue; }
      if (p.split != 0u) {
        outp[wg.z * p.Cout * K + co * K + k] = acc[i][j];
      } else {
        let o = p.wOff + co * K + k;
        if (p.accumulate != 0u) { outp[o] = outp[o] + acc[i][j]; } else { outp[o] = acc[i][j]; }
      }
    }
  }
}
`;

/** dst[dstOff + i] (=|+=) sum_s partial[s * n + i], i < n. */
export const SPLIT_REDUCE_WGSL = /* wgsl */ `
struct P { n: u32, S: u32, dstOff: u32, accumulate: u32 }
@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wg.y * nw.x + wg.x) * 256u + li;
  if (i >= p.n) { return; }
  var s = 0.0;
  for (var k = 0u; k < p.S; k++) { s += partial[k * p.n + i]; }
  let o = p.dstOff + i;
  if (p.accumulate != 0u) { dst[o] = dst[o] + s; } else { dst[o] = s; }
}
`;

/**
 * Per-channel sums of dOut [B, C, HW]: the bias gradient grads[bOff + c] = sum_{b, m} dOut (hasBias) and the
 * embedding gradient dEmb[embOff + b * C + c] = sum_m dOut (hasEmb). One workgroup per channel.
 */
export const CHANNEL_SUM_WGSL = /* wgsl */ `
struct P { B: u32, C: u32, HW: u32, bOff: u32, embOff: u32, hasBias: u32, hasEmb: u32, accumulate: u32 }
@group(0) @binding(0) var<storage, read> dOut: array<f32>;
@group(0) @binding(1) var<storage, read_write> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> dEmb: array<f32>;
@group(0) @binding(3) var<uniform> p: P;

var<workgroup> red: array<f32, 256>;

fn wgSum(li: u32, v: f32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s / 2u) {
    if (li < s) { red[li] += red[li + s]; }
    workgroupBarrier();
  }
  let t = red[0];
  workgroupBarrier();
  return t;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let c = wg.x;
  var total = 0.0;
  for (var b = 0u; b < p.B; b++) {
    var s = 0.0;
    let base = (b * p.C + c) * p.HW;
    for (var i = li; i < p.HW; i += 256u) { s += dOut[base + i]; }
    let t = wgSum(li, s);
    total += t;
    if (p.hasEmb != 0u && li == 0u) {
      let o = p.embOff + b * p.C + c;
      if (p.accumulate != 0u) { dEmb[o] = dEmb[o] + t; } else { dEmb[o] = t; }
    }
  }
  if (p.hasBias != 0u && li == 0u) {
    let o = p.bOff + c;
    if (p.accumulate != 0u) { grads[o] = grads[o] + total; } else { grads[o] = total; }
  }
}
`;

/** dst[dstOff + i] (=|+=) scale * src[srcOff + i], i < n: residual pass-through and gradient accumulation. */
export const ADD_WGSL = /* wgsl */ `
struct P { n: u32, dstOff: u32, srcOff: u32, accumulate: u32, scale: f32, _a: u32, _b: u32, _c: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wg.y * nw.x + wg.x) * 256u + li;
  if (i >= p.n) { return; }
  let v = p.scale * src[p.srcOff + i];
  let o = p.dstOff + i;
  if (p.accumulate != 0u) { dst[o] = dst[o] + v; } else { dst[o] = v; }
}
`;
