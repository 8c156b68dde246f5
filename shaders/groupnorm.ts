// GroupNorm statistics: mean and 1/sqrt(var + eps) per (batch, group), two passes over the group for precision.
// The input may be a concatenation of two tensors (channels [0,C1) in inA, [C1,C1+C2) in inB), read in place.
// The normalisation itself is applied where the data is next read (the following conv's input load).

export const GROUPNORM_STATS_WGSL = /* wgsl */ `
struct P { C1: u32, C2: u32, HW: u32, G: u32, statsOff: u32, eps: f32, _a: u32, _b: u32 }

@group(0) @binding(0) var<storage, read> inA: array<f32>;
@group(0) @binding(1) var<storage, read> inB: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<uniform> p: P;

const WG: u32 = 256u;
var<workgroup> red: array<f32, 256>;

fn val(b: u32, c: u32, i: u32) -> f32 {
  if (c < p.C1) { return inA[(b * p.C1 + c) * p.HW + i]; }
  return inB[(b * p.C2 + (c - p.C1)) * p.HW + i];
}

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

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = wg.x;
  let b = wg.y;
  let cpg = (p.C1 + p.C2) / p.G;
  let n = cpg * p.HW;
  let c0 = g * cpg;
  var s = 0.0;
  for (var i = lid; i < n; i += WG) { s += val(b, c0 + i / p.HW, i % p.HW); }
  let mean = wgSum(lid, s) / f32(n);
  var s2 = 0.0;
  for (var i = lid; i < n; i += WG) {
    let d = val(b, c0 + i / p.HW, i % p.HW) - mean;
    s2 += d * d;
  }
  let variance = wgSum(lid, s2) / f32(n);
  if (lid == 0u) {
    let o = p.statsOff + (b * p.G + g) * 2u;
    stats[o] = mean;
    stats[o + 1u] = inverseSqrt(variance + p.eps);
  }
}
`;
