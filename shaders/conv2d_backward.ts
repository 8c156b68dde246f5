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
import { activationWgsl } from './activation.ts';
import { flatMain256Wgsl, writeOrAddWgsl } from './common.ts';
import { CONV_SHAPE_FIELDS, catLoadWgsl, normActWgsl } from './conv2d_common.ts';
import { uniformLayout } from './uniform.ts';

// The kernels' uniforms, each declared once for the WGSL struct and the host's packer (shaders/uniform.ts).
/** CONV2D_DX_WGSL's uniform. */
export const CONV_DX_UNIFORM = uniformLayout('P', {
  ...CONV_SHAPE_FIELDS,
  wOff: 'u32',
  ks: 'u32',
  stride: 'u32',
  upsample: 'u32',
  accumulate: 'u32',
});

/** CONV2D_DW_WGSL's uniform. */
export const CONV_DW_UNIFORM = uniformLayout('P', {
  ...CONV_SHAPE_FIELDS,
  G: 'u32',
  wOff: 'u32',
  gOff: 'u32',
  betaOff: 'u32',
  statsOff: 'u32',
  chunk: 'u32',
  ks: 'u32',
  stride: 'u32',
  upsample: 'u32',
  norm: 'u32',
  split: 'u32',
  accumulate: 'u32',
});

/** SPLIT_REDUCE_WGSL's uniform. */
export const SPLIT_REDUCE_UNIFORM = uniformLayout('P', {
  n: 'u32',
  S: 'u32',
  dstOff: 'u32',
  accumulate: 'u32',
});

/** CHANNEL_SUM_WGSL's and channelSumDirectWgsl's uniform. */
export const CHANNEL_SUM_UNIFORM = uniformLayout('P', {
  B: 'u32',
  C: 'u32',
  HW: 'u32',
  bOff: 'u32',
  embOff: 'u32',
  hasBias: 'u32',
  hasEmb: 'u32',
  accumulate: 'u32',
});

/** FLIP_WEIGHTS_WGSL's uniform. */
export const FLIP_WEIGHTS_UNIFORM = uniformLayout('P', {
  Cout: 'u32',
  Cin: 'u32',
  KK: 'u32',
  wOff: 'u32',
});

/** convDwDirectWgsl's uniform. */
export const DW_DIRECT_UNIFORM = uniformLayout('P', {
  B: 'u32',
  C1: 'u32',
  C2: 'u32',
  H: 'u32',
  W: 'u32',
  Cout: 'u32',
  rows: 'u32',
  chunks: 'u32',
});

/** ADD_WGSL's uniform. */
export const ADD_UNIFORM = uniformLayout('P', {
  n: 'u32',
  dstOff: 'u32',
  srcOff: 'u32',
  accumulate: 'u32',
  scale: 'f32',
});

/**
 * The GEMM kernels' step over one staged tile (As [TK][aRow], Bs [TK][bRow]): each invocation adds the outer products
 * of its 4 rows (tm) and 4 columns (tn) into acc; the closing barrier keeps the next staging out until all have read.
 */
function tileFmaWgsl(aRow: string, bRow: string): string {
  return /* wgsl */ `    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      var a: array<f32, 4>;
      var bw: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) { a[i] = As[kk * ${aRow} + tm + i]; }
      for (var j = 0u; j < 4u; j++) { bw[j] = Bs[kk * ${bRow} + tn + j]; }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i][j] = fma(a[i], bw[j], acc[i][j]); }
      }
    }
    workgroupBarrier();`;
}

/** Input gradient as an implicit GEMM: M = stored input pixels, N = input channels, K = Cout * KS * KS * (4 if upsampled). */
export const CONV2D_DX_WGSL = /* wgsl */ `
${CONV_DX_UNIFORM.wgsl}

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

// Each invocation always stages the same stored input pixel of the tile (its row and column divided out once), and
// before each k-step the first TK invocations decode the step's reduction indices (output channel, tap, upsample
// sub-pixel) for the whole workgroup, so the per-element gather is a few adds, a stride test and one load.
var<workgroup> kCo: array<u32, 16>;   // output channel of each reduction index of the step (0xffffffff: past K)
var<workgroup> kTap: array<u32, 16>;  // its tap r = ky * KS + kx
var<workgroup> kDy: array<i32, 16>;   // pad - ky (+ the upsample sub-pixel's row), and the same for columns
var<workgroup> kDx: array<i32, 16>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u,
        @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let M = p.Hin * p.Win;
  let Cin = p.C1 + p.C2;
  let KK = p.ks * p.ks;
  let per = KK * U();
  let K = p.Cout * per;
  let b = wg.z;
  let m0 = wg.x * TM;
  let n0 = wg.y * TN;
  let tm = lid.x * 4u;
  let tn = lid.y * 4u;
  // the pixel this invocation stages: mm = li % TM, reduction rows li / TM + 4 e
  let smm = li % TM;
  let skk0 = li / TM;
  let sm = m0 + smm;
  let sLive = sm < M;
  let sy = sm / p.Win;
  let sx = sm - sy * p.Win;
  var by = i32(sy);
  var bx = i32(sx);
  if (p.upsample != 0u) { by = 2 * by; bx = 2 * bx; }
  let s1 = p.stride - 1u;  // stride 1 or 2: the mask for divisibility and the shift for division
  let HWo = p.Hout * p.Wout;
  var acc: array<array<f32, 4>, 4>;
  for (var k0 = 0u; k0 < K; k0 += TK) {
    if (li < TK) {
      let k = k0 + li;
      var co = 0xffffffffu;
      if (k < K) {
        co = k / per;
        let r2 = k - co * per;
        let r = r2 / U();
        let u = r2 - r * U();
        let ky = r / p.ks;
        let kx = r - ky * p.ks;
        let pad = i32(p.ks / 2u);
        var uy = 0;
        var ux = 0;
        if (p.upsample != 0u) { uy = i32(u / 2u); ux = i32(u & 1u); }
        kTap[li] = r;
        kDy[li] = pad - i32(ky) + uy;
        kDx[li] = pad - i32(kx) + ux;
      }
      kCo[li] = co;
    }
    workgroupBarrier();
    for (var e = 0u; e < 4u; e++) {
      let kk = skk0 + 4u * e;
      let co = kCo[kk];
      var g = 0.0;
      if (sLive && co != 0xffffffffu) {
        let ty = by + kDy[kk];
        let tx = bx + kDx[kk];
        if (ty >= 0 && tx >= 0 && (u32(ty) & s1) == 0u && (u32(tx) & s1) == 0u) {
          let oy = u32(ty) >> s1;
          let ox = u32(tx) >> s1;
          if (oy < p.Hout && ox < p.Wout) { g = dOut[(b * p.Cout + co) * HWo + oy * p.Wout + ox]; }
        }
      }
      As[kk * TM + smm] = g;
      // the weight tile: transposed and flipped reads of W[co, ci, tap]
      let idx = li + e * 256u;
      let nn = idx / TK;
      let kb = idx - nn * TK;
      let ci = n0 + nn;
      let wco = kCo[kb];
      var w = 0.0;
      if (wco != 0xffffffffu && ci < Cin) { w = params[p.wOff + (wco * Cin + ci) * KK + kTap[kb]]; }
      Bs[kb * PN + nn] = w;
    }
${tileFmaWgsl('TM', 'PN')}
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
        ${writeOrAddWgsl('dA', 'o', 'v')}
      } else {
        let o = (b * p.C2 + (ci - p.C1)) * M + m;
        ${writeOrAddWgsl('dB', 'o', 'v')}
      }
    }
  }
}
`;

/** Where CONV2D_DW_WGSL finds the mean and rstd of input channel ci of image b (then stats[... + 1u]). */
const DW_STATS = 'p.statsOff + (b * p.G + ci / cpg) * 2u';

/**
 * Weight gradient as a GEMM over the [Cout, K] weight matrix, reducing over (batch, output pixel). The input tile is
 * the forward's own im2col load (GroupNorm/Swish, upsample, concatenation recomputed, never stored). With `split` the
 * reduction is cut into gridDim.z slices, each writing a partial [Cout, K] into `outp` at slice * Cout * K (summed by
 * SPLIT_REDUCE_WGSL); without, the result goes to outp[wOff + co * K + k].
 */
export const CONV2D_DW_WGSL = /* wgsl */ `
${CONV_DW_UNIFORM.wgsl}
${activationWgsl()}

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

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u,
        @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let M = p.Hout * p.Wout;
  let KK = p.ks * p.ks;
  let K = (p.C1 + p.C2) * KK;
  let R = p.B * M;
  let rStart = wg.z * p.chunk;
  let rEnd = min(R, rStart + p.chunk);
  let n0 = wg.x * TN;
  let c0 = wg.y * TM;
  let tm = lid.x * 4u;
  let tn = lid.y * 4u;
  // The forward's im2col (shaders/conv2d.ts) with its index math hoisted: this invocation always stages reduction
  // row rr (one output pixel per step) and the same four K indices (channel, tap) and output channels, decoded once.
  let rr = li % TK;
  let pad = i32(p.ks / 2u);
  var He = i32(p.Hin);
  var We = i32(p.Win);
  if (p.upsample != 0u) { He = 2 * He; We = 2 * We; }
  let hw = p.Hin * p.Win;
  var cpg = 1u;
  if (p.norm != 0u) { cpg = (p.C1 + p.C2) / p.G; }
  var eCi: array<u32, 4>;    // input channel of K index n0 + cc (0xffffffff: past K)
  var eDy: array<i32, 4>;
  var eDx: array<i32, 4>;
  var eGamma: array<f32, 4>;
  var eBeta: array<f32, 4>;
  for (var e = 0u; e < 4u; e++) {
    let k = n0 + li / TK + 16u * e;
    eCi[e] = 0xffffffffu;
    if (k < K) {
      let ci = k / KK;
      let r = k - ci * KK;
      let ky = r / p.ks;
      eCi[e] = ci;
      eDy[e] = i32(ky) - pad;
      eDx[e] = i32(r - ky * p.ks) - pad;
      if (p.norm != 0u) { eGamma[e] = params[p.gOff + ci]; eBeta[e] = params[p.betaOff + ci]; }
    }
  }
  var acc: array<array<f32, 4>, 4>;
  for (var r0 = rStart; r0 < rEnd; r0 += TK) {
    let r = r0 + rr;
    let live = r < rEnd;
    let b = select(0u, r / M, live);
    let m = select(0u, r - b * M, live);
    let oy = m / p.Wout;
    let ox = m - oy * p.Wout;
    let yb = i32(oy * p.stride);
    let xb = i32(ox * p.stride);
    for (var e = 0u; e < 4u; e++) {
      let cc = li / TK + 16u * e;
      var g = 0.0;
      var a = 0.0;
      if (live) {
        let co = c0 + cc;
        if (co < p.Cout) { g = dOut[(b * p.Cout + co) * M + m]; }
        let ci = eCi[e];
        let iy = yb + eDy[e];
        let ix = xb + eDx[e];
        if (ci != 0xffffffffu && iy >= 0 && ix >= 0 && iy < He && ix < We) {
          var sy = u32(iy);
          var sx = u32(ix);
          if (p.upsample != 0u) { sy = sy / 2u; sx = sx / 2u; }
          ${catLoadWgsl('a', 'ci', 'hw', 'sy * p.Win + sx')}
          ${normActWgsl('a', `(a - stats[${DW_STATS}]) * stats[${DW_STATS} + 1u] * eGamma[e] + eBeta[e]`, 'p.norm')}
        }
      }
      As[rr * PAD + cc] = g;
      Bs[rr * PAD + cc] = a;
    }
${tileFmaWgsl('PAD', 'PAD')}
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
        ${writeOrAddWgsl('outp', 'o', 'acc[i][j]')}
      }
    }
  }
}
`;

/** dst[dstOff + i] (=|+=) sum_s partial[s * n + i], i < n. */
export const SPLIT_REDUCE_WGSL = /* wgsl */ `
${SPLIT_REDUCE_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

${flatMain256Wgsl()}
  if (i >= p.n) { return; }
  var s = 0.0;
  for (var k = 0u; k < p.S; k++) { s += partial[k * p.n + i]; }
  let o = p.dstOff + i;
  ${writeOrAddWgsl('dst', 'o', 's')}
}
`;

/** The uniform and bindings of both per-channel sum kernels (dOut read as f32 or as vec4f). */
function channelSumHeader(dOut: 'f32' | 'vec4f'): string {
  return /* wgsl */ `${CHANNEL_SUM_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> dOut: array<${dOut}>;
@group(0) @binding(1) var<storage, read_write> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> dEmb: array<f32>;
@group(0) @binding(3) var<uniform> p: P;`;
}

/**
 * Per-channel sums of dOut [B, C, HW]: the bias gradient grads[bOff + c] = sum_{b, m} dOut (hasBias) and the
 * embedding gradient dEmb[embOff + b * C + c] = sum_m dOut (hasEmb). One workgroup per channel.
 */
export const CHANNEL_SUM_WGSL = /* wgsl */ `
${channelSumHeader('f32')}

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
      ${writeOrAddWgsl('dEmb', 'o', 't')}
    }
  }
  if (p.hasBias != 0u && li == 0u) {
    let o = p.bOff + c;
    ${writeOrAddWgsl('grads', 'o', 'total')}
  }
}
`;

/**
 * The same per-channel sums for CPU-like devices (software Vulkan), where a 256-wide workgroup's tree reduction
 * (nine barriers per image, each a switch between the workgroup's SIMD batches) costs far more than the sum itself:
 * one invocation per channel adds its B * HW values in order (four at a time as vec4s where HW is a multiple of 4),
 * in small workgroups so the channels spread over the device's threads. Same bindings and uniform as
 * CHANNEL_SUM_WGSL.
 */
export const channelSumDirectWgsl = (vec: boolean): string => /* wgsl */ `
${channelSumHeader(vec ? 'vec4f' : 'f32')}

@compute @workgroup_size(8)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let c = gid.x;
  if (c >= p.C) { return; }
  let n = p.HW${vec ? ' / 4u' : ''};
  var total = 0.0;
  for (var b = 0u; b < p.B; b++) {
    let base = (b * p.C + c) * n;
    var s = ${vec ? 'vec4f(0.0)' : '0.0'};
    for (var i = 0u; i < n; i++) { s += dOut[base + i]; }
    let t = ${vec ? '(s.x + s.y) + (s.z + s.w)' : 's'};
    total += t;
    if (p.hasEmb != 0u) {
      let o = p.embOff + b * p.C + c;
      ${writeOrAddWgsl('dEmb', 'o', 't')}
    }
  }
  if (p.hasBias != 0u) {
    let o = p.bOff + c;
    ${writeOrAddWgsl('grads', 'o', 'total')}
  }
}
`;

/**
 * The input gradient of a stride-1 conv is a conv of dOut with the weights transposed (input and output channels
 * swapped) and flipped (tap ky, kx -> KS-1-ky, KS-1-kx): wT[(ci * Cout + co) * KK + KK-1-t] = W[(co * Cin + ci) * KK + t].
 * The software device runs that conv with its fast direct kernel instead of the GEMM gather.
 */
export const FLIP_WEIGHTS_WGSL = /* wgsl */ `
${FLIP_WEIGHTS_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> params: array<f32>;
@group(0) @binding(1) var<storage, read_write> wT: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

${flatMain256Wgsl()}
  if (i >= p.Cout * p.Cin * p.KK) { return; }
  let t = i % p.KK;
  let cc = i / p.KK;
  let ci = cc % p.Cin;
  let co = cc / p.Cin;
  wT[(ci * p.Cout + co) * p.KK + (p.KK - 1u - t)] = params[p.wOff + i];
}
`;

/**
 * The banded weight-gradient kernels' invocation decode (convDwDirectWgsl, convDwStridedWgsl): id = ((b * chunks +
 * chunk) * nCi + ci) * nCoB + cob over 64-wide workgroups; the band is rows [y0, y1) of the `height` rows it walks.
 */
export function dwBandWgsl(nCi: string, ci: string, height: string): string {
  return /* wgsl */ `  let id = (wg.y * nw.x + wg.x) * 64u + li;
  if (id >= p.B * p.chunks * ${nCi} * nCoB) { return; }
  let cob = id % nCoB;
  let rr = id / nCoB;
  let ${ci} = rr % ${nCi};
  let slice = rr / ${nCi};  // b * chunks + chunk
  let b = slice / p.chunks;
  let y0 = (slice - b * p.chunks) * p.rows;
  let y1 = min(${height}, y0 + p.rows);`;
}

/**
 * The weight gradient of a stride-1 conv on a plain input (no fused GroupNorm, no upsampling) for software devices:
 * each invocation owns 4 output channels x one input channel x a band of rows of one image, and walks it four pixels at
 * a time (dOut as vec4s, W a multiple of 4), keeping the 4 x KS*KS sums in registers; it writes them to its band's
 * slice of `partial` ([slice][Cout][Cin][KS*KS], the weights' layout), and SPLIT_REDUCE_WGSL adds the slices.
 */
export const convDwDirectWgsl = (ks: 1 | 3): string => /* wgsl */ `
${DW_DIRECT_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> inA: array<f32>;
@group(0) @binding(1) var<storage, read> inB: array<f32>;
@group(0) @binding(2) var<storage, read> dOut: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;
@group(0) @binding(4) var<uniform> p: P;

const KS: u32 = ${ks}u;
const KK: u32 = ${ks * ks}u;
const PAD: i32 = ${ks >> 1};

fn xAt(b: u32, ci: u32, y: i32, x: i32) -> f32 {
  if (y < 0 || x < 0 || y >= i32(p.H) || x >= i32(p.W)) { return 0.0; }
  var v = 0.0;
  ${catLoadWgsl('v', 'ci', 'p.H * p.W', 'u32(y) * p.W + u32(x)')}
  return v;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  let Cin = p.C1 + p.C2;
  let nCoB = (p.Cout + 3u) / 4u;
${dwBandWgsl('Cin', 'ci', 'p.H')}
  let co0 = cob * 4u;
  let W4 = p.W / 4u;
  var acc: array<array<f32, KK>, 4>;
  for (var y = y0; y < y1; y++) {
    for (var x4 = 0u; x4 < W4; x4++) {
      var g: array<vec4f, 4>;
      for (var j = 0u; j < 4u; j++) {
        if (co0 + j < p.Cout) { g[j] = dOut[((b * p.Cout + co0 + j) * p.H + y) * W4 + x4]; }
      }
      let xb = i32(x4 * 4u) - PAD;
      for (var ky = 0u; ky < KS; ky++) {
        let iy = i32(y + ky) - PAD;
        var xs: array<f32, ${4 + ks - 1}>;
        for (var d = 0u; d < ${4 + ks - 1}u; d++) { xs[d] = xAt(b, ci, iy, xb + i32(d)); }
        for (var kx = 0u; kx < KS; kx++) {
          let v = vec4f(xs[kx], xs[kx + 1u], xs[kx + 2u], xs[kx + 3u]);
          for (var j = 0u; j < 4u; j++) { acc[j][ky * KS + kx] += dot(g[j], v); }
        }
      }
    }
  }
  let base = slice * p.Cout * Cin * KK;
  for (var j = 0u; j < 4u; j++) {
    if (co0 + j >= p.Cout) { continue; }
    for (var t = 0u; t < KK; t++) { partial[base + ((co0 + j) * Cin + ci) * KK + t] = acc[j][t]; }
  }
}
`;

/** dst[dstOff + i] (=|+=) scale * src[srcOff + i], i < n: residual pass-through and gradient accumulation. */
export const ADD_WGSL = /* wgsl */ `
${ADD_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

${flatMain256Wgsl()}
  if (i >= p.n) { return; }
  let v = p.scale * src[p.srcOff + i];
  let o = p.dstOff + i;
  ${writeOrAddWgsl('dst', 'o', 'v')}
}
`;
