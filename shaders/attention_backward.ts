// Backward of the attention core (shaders/attention.ts), per batch element, Q/K/V = channel blocks 0/1/2 of qkv:
//   S[i, j] = scale * q_i . k_j,  P = softmax_j(S),  O[c, i] = sum_j P[i, j] v[c, j]
// Given dO [B, C, HW]:
//   dP[i, j] = dO_i . v_j,  D_i = sum_j P[i, j] dP[i, j] (= dO_i . O_i),  dS[i, j] = P[i, j] (dP[i, j] - D_i)
//   dV[c, j] = sum_i P[i, j] dO[c, i],  dQ[c, i] = scale sum_j dS[i, j] k[c, j],  dK[c, j] = scale sum_i dS[i, j] q[c, i]
// Flash-attention-2 style, scores recomputed in 16x16 tiles, never stored: memory stays O(C * HW) plus a [B, HW, 2]
// row-statistics buffer (logsumexp, D), whatever the map size.
//   ATTN_BWD_Q: a workgroup owns 16 queries; pass 1 over all keys computes the row max, sum and D online (and stores
//     logsumexp and D); pass 2 recomputes P, dS and accumulates dQ.
//   ATTN_BWD_KV: a workgroup owns 16 keys; one pass over all queries (using the stored row statistics) accumulates
//     dK and dV.
// dQKV [B, 3C, HW] is written (accumulate 0) or added into (1); ATTN_BWD_Q writes the Q block, ATTN_BWD_KV
// the K and V blocks.
import { uniformLayout } from './uniform.ts';

/** The backward kernels' uniform: channels, positions, the scores' scale 1/sqrt(C), and whether dqkv is added into. */
export const ATTENTION_BACKWARD_UNIFORM = uniformLayout('P', { C: 'u32', HW: 'u32', scale: 'f32', accumulate: 'u32' });

const HEADER = /* wgsl */ `
${ATTENTION_BACKWARD_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> dO: array<f32>;
@group(0) @binding(2) var<storage, read_write> dqkv: array<f32>;
@group(0) @binding(3) var<storage, read_write> rowStats: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
const NEG: f32 = -3.0e38;
var<workgroup> S: array<f32, 256>;
var<workgroup> DP: array<f32, 256>;

fn put(o: u32, v: f32) {
  if (p.accumulate != 0u) { dqkv[o] = dqkv[o] + v; } else { dqkv[o] = v; }
}

// (q_i . k_j, dO_i . v_j) from one batch element's q, k, v and dO blocks (qb, kb, vb, ob): the unscaled score and
// dP, recomputed wherever a tile needs them
fn dots(qb: u32, kb: u32, vb: u32, ob: u32, qi: u32, kj: u32) -> vec2f {
  let C = p.C;
  let HW = p.HW;
  var d = 0.0;
  var e = 0.0;
  for (var c = 0u; c < C; c++) {
    d = fma(qkv[qb + c * HW + qi], qkv[kb + c * HW + kj], d);
    e = fma(dO[ob + c * HW + qi], qkv[vb + c * HW + kj], e);
  }
  return vec2f(d, e);
}
`;

// Both kernels' start: batch element, block offsets, and the two thread layouts over 256 invocations: the score
// phase's (row si, column sj) of a 16x16 tile, the accumulate phase's (position al, channels ac + 16 r).
const PROLOGUE = /* wgsl */ `
  let b = wg.y;
  let C = p.C;
  let HW = p.HW;
  let qb = b * 3u * C * HW;
  let kb = qb + C * HW;
  let vb = kb + C * HW;
  let ob = b * C * HW;
  let si = lid / 16u;
  let sj = lid % 16u;
  let al = lid % 16u;
  let ac = lid / 16u;
  let nblocks = (HW + 15u) / 16u;`;

export const attentionBackwardQWgsl = (R: number): string => /* wgsl */ `
${HEADER}
const R: u32 = ${R}u;
var<workgroup> rowM: array<f32, 16>;
var<workgroup> rowL: array<f32, 16>;
var<workgroup> rowT: array<f32, 16>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
${PROLOGUE}
  let i0 = wg.x * 16u;
  let qi = i0 + si;
  if (lid < 16u) { rowM[lid] = NEG; rowL[lid] = 0.0; rowT[lid] = 0.0; }
  workgroupBarrier();
  // pass 1: row max, normaliser, and t = sum_j exp(s - m) dP (so D = t / l)
  for (var blk = 0u; blk < nblocks; blk++) {
    let kj = blk * 16u + sj;
    var s = NEG;
    var dp = 0.0;
    if (kj < HW && qi < HW) {
      let de = dots(qb, kb, vb, ob, qi, kj);
      s = de.x * p.scale;
      dp = de.y;
    } else if (kj < HW) {
      s = 0.0;
    }
    S[lid] = s;
    DP[lid] = dp;
    workgroupBarrier();
    if (lid < 16u) {
      let mOld = rowM[lid];
      var mNew = mOld;
      for (var j = 0u; j < 16u; j++) { mNew = max(mNew, S[lid * 16u + j]); }
      var sum = 0.0;
      var t = 0.0;
      for (var j = 0u; j < 16u; j++) {
        let e = exp(S[lid * 16u + j] - mNew);
        sum += e;
        t = fma(e, DP[lid * 16u + j], t);
      }
      let alpha = exp(mOld - mNew);
      rowL[lid] = rowL[lid] * alpha + sum;
      rowT[lid] = rowT[lid] * alpha + t;
      rowM[lid] = mNew;
    }
    workgroupBarrier();
  }
  if (lid < 16u) {
    let lse = rowM[lid] + log(rowL[lid]);
    let D = rowT[lid] / rowL[lid];
    rowM[lid] = lse;
    rowT[lid] = D;
    let q = i0 + lid;
    if (q < HW) {
      rowStats[(b * HW + q) * 2u] = lse;
      rowStats[(b * HW + q) * 2u + 1u] = D;
    }
  }
  workgroupBarrier();
  // pass 2: dS and dQ
  var acc: array<f32, R>;
  for (var blk = 0u; blk < nblocks; blk++) {
    let j0 = blk * 16u;
    let kj = j0 + sj;
    var ds = 0.0;
    if (kj < HW && qi < HW) {
      let de = dots(qb, kb, vb, ob, qi, kj);
      let pr = exp(de.x * p.scale - rowM[si]);
      ds = pr * (de.y - rowT[si]);
    }
    S[lid] = ds;
    workgroupBarrier();
    let jn = min(16u, HW - j0);
    for (var r = 0u; r < R; r++) {
      let c = ac + 16u * r;
      if (c < C) {
        var a = acc[r];
        for (var j = 0u; j < jn; j++) { a = fma(S[al * 16u + j], qkv[kb + c * HW + j0 + j], a); }
        acc[r] = a;
      }
    }
    workgroupBarrier();
  }
  let q = i0 + al;
  if (q < HW) {
    for (var r = 0u; r < R; r++) {
      let c = ac + 16u * r;
      if (c < C) { put(qb + c * HW + q, acc[r] * p.scale); }
    }
  }
}
`;

export const attentionBackwardKVWgsl = (R: number): string => /* wgsl */ `
${HEADER}
const R: u32 = ${R}u;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
${PROLOGUE}
  // score phase: (query si, key sj); accumulate phase: (key al, channels ac + 16 r)
  let j0 = wg.x * 16u;
  let kj = j0 + sj;
  var accK: array<f32, R>;
  var accV: array<f32, R>;
  for (var blk = 0u; blk < nblocks; blk++) {
    let i0 = blk * 16u;
    let qi = i0 + si;
    var pr = 0.0;
    var ds = 0.0;
    if (kj < HW && qi < HW) {
      let de = dots(qb, kb, vb, ob, qi, kj);
      pr = exp(de.x * p.scale - rowStats[(b * HW + qi) * 2u]);
      ds = pr * (de.y - rowStats[(b * HW + qi) * 2u + 1u]);
    }
    S[lid] = pr;
    DP[lid] = ds;
    workgroupBarrier();
    let iN = min(16u, HW - i0);
    for (var r = 0u; r < R; r++) {
      let c = ac + 16u * r;
      if (c < C) {
        var av = accV[r];
        var ak2 = accK[r];
        for (var i = 0u; i < iN; i++) {
          av = fma(S[i * 16u + al], dO[ob + c * HW + i0 + i], av);
          ak2 = fma(DP[i * 16u + al], qkv[qb + c * HW + i0 + i], ak2);
        }
        accV[r] = av;
        accK[r] = ak2;
      }
    }
    workgroupBarrier();
  }
  let j = j0 + al;
  if (j < HW) {
    for (var r = 0u; r < R; r++) {
      let c = ac + 16u * r;
      if (c < C) {
        put(kb + c * HW + j, accK[r] * p.scale);
        put(vb + c * HW + j, accV[r]);
      }
    }
  }
}
`;
