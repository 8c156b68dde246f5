// Single-head self-attention over all positions, the reference's SelfAttention core:
//   out[c, i] = sum_j softmax_j(q[:, i] . k[:, j] * scale) v[c, j],   scale = 1/sqrt(C)
// from qkv [B, 3C, HW] (q, k, v = channel blocks 0, 1, 2, as `qkv.chunk(3, dim=2)` with one head).
// Computed flash-style: a workgroup owns 16 queries and walks the keys in blocks of 64 with an online softmax, so
// memory stays O(C * HW) whatever the map size (no HW x HW score buffer). Register blocking keeps loads per
// multiply-add low (each one costs far more than the arithmetic on a CPU device): a thread computes a 1 x 4 block of
// scores, and accumulates 4 queries x ceil(C / 64) channels.
import { uniformLayout } from './uniform.ts';

/** The flash kernel's uniform: channels, positions, and the scores' scale 1/sqrt(C). */
export const ATTENTION_UNIFORM = uniformLayout('P', { C: 'u32', HW: 'u32', scale: 'f32' });

/**
 * R = ceil(C / 64) channel groups per thread (a function-scope array needs a constant size, so it is templated).
 * `vec` (HW a multiple of 4, so every row of q, k and v starts on a vec4): keys are read four at a time, and the
 * weighted sum of v walks keys in fours with vec4 reads of v and of the probabilities (a quarter of the loads).
 */
export const attentionWgsl = (R: number, vec = false): string => /* wgsl */ `
${ATTENTION_UNIFORM.wgsl}

const R: u32 = ${R}u;
const QT: u32 = 16u;  // queries per workgroup
const KB: u32 = 64u;  // keys per block

@group(0) @binding(0) var<storage, read> qkv: array<${vec ? 'vec4f' : 'f32'}>;
@group(0) @binding(1) var<storage, read_write> outp: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

const NEG: f32 = -3.0e38;
var<workgroup> S: array<${vec ? 'vec4f, 256' : 'f32, 1024'}>;   // [QT queries][KB keys]
var<workgroup> rowAlpha: array<f32, 16>;
var<workgroup> rowL: array<f32, 16>;
var<workgroup> rowM: array<f32, 16>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = wg.y;
  let i0 = wg.x * QT;
  let C = p.C;
  let HW = p.HW;
  let qb = b * 3u * C * HW;
  let kb = qb + C * HW;
  let vb = qb + 2u * C * HW;
  // scores: thread -> query si, keys 4 sg .. 4 sg + 3
  let si = lid / 16u;
  let sg = lid % 16u;
  // accumulation: thread -> queries 4 aq .. 4 aq + 3, channels ac + 64 r
  let aq = lid % 4u;
  let ac = lid / 4u;
  var acc: array<array<f32, 4>, R>;
  if (lid < QT) { rowM[lid] = NEG; rowL[lid] = 0.0; }
  workgroupBarrier();
  let qi = min(i0 + si, HW - 1u); // a padding query row repeats the last one; its result is not written
  let nblocks = (HW + KB - 1u) / KB;
  for (var blk = 0u; blk < nblocks; blk++) {
    let j0 = blk * KB + 4u * sg;
    var d = vec4f(0.0);
${
  vec
    ? `    let jv = min(j0, HW - 4u) / 4u; // four keys from one vec4 (a block past the last key repeats it, unused)
    let hw4 = HW / 4u;
    for (var c = 0u; c < C; c++) {
      let qa = qb + c * HW + qi;
      let qv = qkv[qa / 4u][qa % 4u];
      d = fma(vec4f(qv), qkv[(kb / 4u) + c * hw4 + jv], d);
    }`
    : `    for (var c = 0u; c < C; c++) {
      let qv = qkv[qb + c * HW + qi];
      let kr = kb + c * HW;
      d.x = fma(qv, qkv[kr + min(j0, HW - 1u)], d.x);
      d.y = fma(qv, qkv[kr + min(j0 + 1u, HW - 1u)], d.y);
      d.z = fma(qv, qkv[kr + min(j0 + 2u, HW - 1u)], d.z);
      d.w = fma(qv, qkv[kr + min(j0 + 3u, HW - 1u)], d.w);
    }`
}
    var sv = vec4f(NEG);
    for (var e = 0u; e < 4u; e++) {
      if (j0 + e < HW) { sv[e] = d[e] * p.scale; }
    }
${vec ? '    S[(si * KB + 4u * sg) / 4u] = sv;' : '    for (var e = 0u; e < 4u; e++) { S[si * KB + 4u * sg + e] = sv[e]; }'}
    workgroupBarrier();
    if (lid < QT) {
      let mOld = rowM[lid];
      var mNew = mOld;
${
  vec
    ? `      for (var j = 0u; j < KB / 4u; j++) { let x = S[lid * (KB / 4u) + j]; mNew = max(mNew, max(max(x.x, x.y), max(x.z, x.w))); }
      var sum = 0.0;
      for (var j = 0u; j < KB / 4u; j++) {
        let e = exp(S[lid * (KB / 4u) + j] - vec4f(mNew));
        S[lid * (KB / 4u) + j] = e;
        sum += e.x + e.y + e.z + e.w;
      }`
    : `      for (var j = 0u; j < KB; j++) { mNew = max(mNew, S[lid * KB + j]); }
      var sum = 0.0;
      for (var j = 0u; j < KB; j++) {
        let e = exp(S[lid * KB + j] - mNew);
        S[lid * KB + j] = e;
        sum += e;
      }`
}
      let alpha = exp(mOld - mNew);
      rowAlpha[lid] = alpha;
      rowL[lid] = rowL[lid] * alpha + sum;
      rowM[lid] = mNew;
    }
    workgroupBarrier();
    let jn = min(KB, HW - blk * KB);
    let a4 = vec4f(rowAlpha[4u * aq], rowAlpha[4u * aq + 1u], rowAlpha[4u * aq + 2u], rowAlpha[4u * aq + 3u]);
    for (var r = 0u; r < R; r++) {
      let c = ac + 64u * r;
      if (c < C) {
        var a = vec4f(acc[r][0], acc[r][1], acc[r][2], acc[r][3]) * a4;
        let vr = vb + c * HW + blk * KB;
${
  vec
    ? `        let q0 = (4u * aq) * (KB / 4u);
        for (var j = 0u; j < jn / 4u; j++) {
          let v = qkv[vr / 4u + j];
          a += vec4f(dot(S[q0 + j], v), dot(S[q0 + KB / 4u + j], v), dot(S[q0 + 2u * (KB / 4u) + j], v), dot(S[q0 + 3u * (KB / 4u) + j], v));
        }`
    : `        for (var j = 0u; j < jn; j++) {
          let v = qkv[vr + j];
          a = fma(vec4f(S[(4u * aq) * KB + j], S[(4u * aq + 1u) * KB + j], S[(4u * aq + 2u) * KB + j], S[(4u * aq + 3u) * KB + j]), vec4f(v), a);
        }`
}
        acc[r][0] = a.x; acc[r][1] = a.y; acc[r][2] = a.z; acc[r][3] = a.w;
      }
    }
    workgroupBarrier();
  }
  for (var q = 0u; q < 4u; q++) {
    let i = i0 + 4u * aq + q;
    if (i < HW) {
      let l = rowL[4u * aq + q];
      for (var r = 0u; r < R; r++) {
        let c = ac + 64u * r;
        if (c < C) { outp[(b * C + c) * HW + i] = acc[r][q] / l; }
      }
    }
  }
}
`;
