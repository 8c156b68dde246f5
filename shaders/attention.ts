// Single-head self-attention over all positions, the reference's SelfAttention core:
//   out[c, i] = sum_j softmax_j(q[:, i] . k[:, j] * scale) v[c, j],   scale = 1/sqrt(C)
// from qkv [B, 3C, HW] (q, k, v = channel blocks 0, 1, 2, as `qkv.chunk(3, dim=2)` with one head).
// Computed flash-style: a workgroup owns QT=16 queries and walks the keys in blocks of 16 with an online softmax, so
// memory stays O(C * HW) whatever the map size (no HW x HW score buffer).

/** R = ceil(C / 16) accumulators per thread (a function-scope array needs a constant size, so it is templated). */
export const attentionWgsl = (R: number): string => /* wgsl */ `
struct P { C: u32, HW: u32, scale: f32, _pad: u32 }

const R: u32 = ${R}u;

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read_write> outp: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

const NEG: f32 = -3.0e38;
var<workgroup> S: array<f32, 256>;   // [16 queries][16 keys]
var<workgroup> rowAlpha: array<f32, 16>;
var<workgroup> rowL: array<f32, 16>;
var<workgroup> rowM: array<f32, 16>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = wg.y;
  let i0 = wg.x * 16u;
  let C = p.C;
  let HW = p.HW;
  let base = b * 3u * C * HW;
  let qb = base;
  let kb = base + C * HW;
  let vb = base + 2u * C * HW;
  // score phase: thread -> (query si, key sj)
  let si = lid / 16u;
  let sj = lid % 16u;
  // accumulate phase: thread -> (query aq, channels ac + 16 r)
  let aq = lid % 16u;
  let ac = lid / 16u;
  var acc: array<f32, R>;
  if (lid < 16u) { rowM[lid] = NEG; rowL[lid] = 0.0; }
  workgroupBarrier();
  let nblocks = (HW + 15u) / 16u;
  for (var blk = 0u; blk < nblocks; blk++) {
    let j0 = blk * 16u;
    var s = NEG;
    let qi = i0 + si;
    let kj = j0 + sj;
    if (kj < HW && qi < HW) {
      var d = 0.0;
      for (var c = 0u; c < C; c++) { d = fma(qkv[qb + c * HW + qi], qkv[kb + c * HW + kj], d); }
      s = d * p.scale;
    } else if (kj < HW) {
      s = 0.0; // a padding query row: any finite value keeps its (unused) softmax finite
    }
    S[lid] = s;
    workgroupBarrier();
    if (lid < 16u) {
      let mOld = rowM[lid];
      var mNew = mOld;
      for (var j = 0u; j < 16u; j++) { mNew = max(mNew, S[lid * 16u + j]); }
      var sum = 0.0;
      for (var j = 0u; j < 16u; j++) {
        let e = exp(S[lid * 16u + j] - mNew);
        S[lid * 16u + j] = e;
        sum += e;
      }
      let alpha = exp(mOld - mNew);
      rowAlpha[lid] = alpha;
      rowL[lid] = rowL[lid] * alpha + sum;
      rowM[lid] = mNew;
    }
    workgroupBarrier();
    let alpha = rowAlpha[aq];
    let jn = min(16u, HW - j0);
    for (var r = 0u; r < R; r++) {
      let c = ac + 16u * r;
      if (c < C) {
        var a = acc[r] * alpha;
        for (var j = 0u; j < jn; j++) { a = fma(S[aq * 16u + j], qkv[vb + c * HW + j0 + j], a); }
        acc[r] = a;
      }
    }
    workgroupBarrier();
  }
  let qi = i0 + aq;
  if (qi < HW) {
    let l = rowL[aq];
    for (var r = 0u; r < R; r++) {
      let c = ac + 16u * r;
      if (c < C) { outp[(b * C + c) * HW + qi] = acc[r] / l; }
    }
  }
}
`;
