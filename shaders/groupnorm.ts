// GroupNorm statistics: mean and 1/sqrt(var + eps) per (batch, group), two passes over the group for precision.
// The input may be a concatenation of two tensors (channels [0,C1) in inA, [C1,C1+C2) in inB), read in place.
// The normalisation itself is applied where the data is next read (the following conv's input load), or written out
// by GN_APPLY (shaders/groupnorm_backward.ts).

/**
 * One workgroup per (group, batch): each channel of the group is walked row by row (no per-element division), as
 * vec4s when the map's pixel count is a multiple of 4 (`vec`: a quarter of the loads, which dominate on a CPU device).
 * WG invocations (a power of two): fewer for small groups, where the tree reduction's barriers cost more than the loads.
 */
export const groupNormStatsWgsl = (vec: boolean, WG = 256): string => /* wgsl */ `
struct P { C1: u32, C2: u32, HW: u32, G: u32, statsOff: u32, eps: f32, _a: u32, _b: u32 }

@group(0) @binding(0) var<storage, read> inA: array<${vec ? 'vec4f' : 'f32'}>;
@group(0) @binding(1) var<storage, read> inB: array<${vec ? 'vec4f' : 'f32'}>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<uniform> p: P;

const WG: u32 = ${WG}u;
var<workgroup> red: array<f32, ${WG}>;

fn wgSum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return total;
}

// the first element (in units of the bound arrays) of channel c's row in inA or inB
fn rowBase(b: u32, c: u32, n: u32) -> u32 {
  if (c < p.C1) { return (b * p.C1 + c) * n; }
  return (b * p.C2 + (c - p.C1)) * n;
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = wg.x;
  let b = wg.y;
  let cpg = (p.C1 + p.C2) / p.G;
  let c0 = g * cpg;
  let n = p.HW${vec ? ' / 4u' : ''};
  var s = ${vec ? 'vec4f(0.0)' : '0.0'};
  for (var c = c0; c < c0 + cpg; c++) {
    let base = rowBase(b, c, n);
    if (c < p.C1) {
      for (var i = lid; i < n; i += WG) { s += inA[base + i]; }
    } else {
      for (var i = lid; i < n; i += WG) { s += inB[base + i]; }
    }
  }
  let mean = wgSum(lid, ${vec ? 's.x + s.y + s.z + s.w' : 's'}) / f32(cpg * p.HW);
  var s2 = ${vec ? 'vec4f(0.0)' : '0.0'};
  for (var c = c0; c < c0 + cpg; c++) {
    let base = rowBase(b, c, n);
    if (c < p.C1) {
      for (var i = lid; i < n; i += WG) { let d = inA[base + i] - mean; s2 += d * d; }
    } else {
      for (var i = lid; i < n; i += WG) { let d = inB[base + i] - mean; s2 += d * d; }
    }
  }
  let variance = wgSum(lid, ${vec ? 's2.x + s2.y + s2.z + s2.w' : 's2'}) / f32(cpg * p.HW);
  if (lid == 0u) {
    let o = p.statsOff + (b * p.G + g) * 2u;
    stats[o] = mean;
    stats[o + 1u] = inverseSqrt(variance + p.eps);
  }
}
`;
