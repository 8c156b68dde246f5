// conv2d as an implicit GEMM: M = output pixels, N = output channels, K = Cin * KS * KS.
// Fused into the input load: the skip concatenation (channels [0,C1) from inA, [C1,C1+C2) from inB, never copied),
// nearest-x2 upsampling (the conv reads the half-size map at (y/2, x/2)), and GroupNorm (+ Swish) with precomputed
// per-(batch, group) statistics; zero padding applies after the normalisation, as in the reference (GN -> Swish ->
// Conv2d(padding=1)). Fused into the write: bias, the per-(batch, channel) noise-level embedding, a residual tensor.
// All weights live in one flat `params` buffer; offsets come in the uniform.

export const CONV2D_WGSL = /* wgsl */ `
struct P {
  B: u32, C1: u32, C2: u32, Hin: u32,
  Win: u32, Hout: u32, Wout: u32, Cout: u32,
  G: u32, wOff: u32, bOff: u32, gOff: u32,
  betaOff: u32, embOff: u32, statsOff: u32, hasBias: u32,
}

override KS: u32 = 3u;         // kernel size: 1 or 3 (padding KS/2)
override STRIDE: u32 = 1u;     // 1, or 2 for Downsample
override UPSAMPLE: bool = false;
override NORM: u32 = 0u;       // 0: none, 1: GroupNorm, 2: GroupNorm + Swish
override HAS_EMB: bool = false;
override HAS_RES: bool = false;

@group(0) @binding(0) var<storage, read> params: array<f32>;
@group(0) @binding(1) var<storage, read> inA: array<f32>;
@group(0) @binding(2) var<storage, read> inB: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read> emb: array<f32>;
@group(0) @binding(5) var<storage, read> res: array<f32>;
@group(0) @binding(6) var<storage, read_write> outp: array<f32>;
@group(0) @binding(7) var<uniform> p: P;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;
var<workgroup> As: array<f32, 1024>; // [TK][TM]
var<workgroup> Bs: array<f32, 1024>; // [TK][TN]

fn loadA(b: u32, k: u32, m: u32, M: u32, K: u32) -> f32 {
  if (k >= K || m >= M) { return 0.0; }
  let KK = KS * KS;
  let ci = k / KK;
  let r = k - ci * KK;
  let ky = r / KS;
  let kx = r - ky * KS;
  let oy = m / p.Wout;
  let ox = m - oy * p.Wout;
  let pad = i32(KS / 2u);
  let iy = i32(oy * STRIDE + ky) - pad;
  let ix = i32(ox * STRIDE + kx) - pad;
  var He = p.Hin;
  var We = p.Win;
  if (UPSAMPLE) { He = 2u * p.Hin; We = 2u * p.Win; }
  if (iy < 0 || ix < 0 || iy >= i32(He) || ix >= i32(We)) { return 0.0; }
  var sy = u32(iy);
  var sx = u32(ix);
  if (UPSAMPLE) { sy = sy / 2u; sx = sx / 2u; }
  let hw = p.Hin * p.Win;
  var v: f32;
  if (ci < p.C1) {
    v = inA[(b * p.C1 + ci) * hw + sy * p.Win + sx];
  } else {
    v = inB[(b * p.C2 + (ci - p.C1)) * hw + sy * p.Win + sx];
  }
  if (NORM != 0u) {
    let g = ci / ((p.C1 + p.C2) / p.G);
    let s = p.statsOff + (b * p.G + g) * 2u;
    v = (v - stats[s]) * stats[s + 1u] * params[p.gOff + ci] + params[p.betaOff + ci];
    if (NORM == 2u) { v = v / (1.0 + exp(-v)); }
  }
  return v;
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u,
        @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let M = p.Hout * p.Wout;
  let K = (p.C1 + p.C2) * KS * KS;
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
      As[idx] = loadA(b, k0 + kk, m0 + mm, M, K);
      let nn = idx / TK;
      let kb = idx - nn * TK;
      let k = k0 + kb;
      let co = n0 + nn;
      var w = 0.0;
      if (k < K && co < p.Cout) { w = params[p.wOff + co * K + k]; }
      Bs[kb * TN + nn] = w;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      var a: array<f32, 4>;
      var bw: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) { a[i] = As[kk * TM + tm + i]; }
      for (var j = 0u; j < 4u; j++) { bw[j] = Bs[kk * TN + tn + j]; }
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
      let co = n0 + tn + j;
      if (co >= p.Cout) { continue; }
      var v = acc[i][j];
      if (p.hasBias != 0u) { v += params[p.bOff + co]; }
      if (HAS_EMB) { v += emb[p.embOff + b * p.Cout + co]; }
      let o = (b * p.Cout + co) * M + m;
      if (HAS_RES) { v += res[o]; }
      outp[o] = v;
    }
  }
}
`;
