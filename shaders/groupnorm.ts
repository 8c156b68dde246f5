// GroupNorm statistics: mean and 1/sqrt(var + eps) per (batch, group), two passes over the group for precision.
// The input may be a concatenation of two tensors (channels [0,C1) in inA, [C1,C1+C2) in inB), read in place.
// The normalisation itself is applied where the data is next read (the following conv's input load), or written out
// by GN_APPLY (shaders/groupnorm_backward.ts).
import { uniformLayout } from './uniform.ts';

// The statistics kernels' shared helpers: a workgroup sum, and where channel c's row starts in inA or inB.
const STATS_HELPERS = (WG: number): string => /* wgsl */ `
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
`;

export const GN_STATS_UNIFORM = uniformLayout('P', {
  C1: 'u32',
  C2: 'u32',
  HW: 'u32',
  G: 'u32',
  statsOff: 'u32',
  eps: 'f32',
});
export const GN_STATS_SPLIT_UNIFORM = uniformLayout('P', {
  C1: 'u32',
  C2: 'u32',
  HW: 'u32',
  G: 'u32',
  P: 'u32',
  L: 'u32',
});
export const GN_STATS_COMBINE_UNIFORM = uniformLayout('P', {
  BG: 'u32',
  P: 'u32',
  L: 'u32',
  units: 'u32',
  unitSize: 'u32',
  statsOff: 'u32',
  eps: 'f32',
});

/**
 * One workgroup per (group, batch): each channel of the group is walked row by row (no per-element division), as
 * vec4s when the map's pixel count is a multiple of 4 (`vec`: a quarter of the loads, which dominate on a CPU device).
 * WG invocations (a power of two): fewer for small groups, where the tree reduction's barriers cost more than the loads.
 */
export const groupNormStatsWgsl = (vec: boolean, WG = 256): string => /* wgsl */ `
${GN_STATS_UNIFORM.wgsl}

@group(0) @binding(0) var<storage, read> inA: array<${vec ? 'vec4f' : 'f32'}>;
@group(0) @binding(1) var<storage, read> inB: array<${vec ? 'vec4f' : 'f32'}>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<uniform> p: P;

${STATS_HELPERS(WG)}
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

/**
 * The statistics of a group split over several workgroups, for GPUs, where one workgroup per (group, batch) leaves
 * most of the device idle (16 groups of 4 x 512 x 512 values at batch 1: 16 workgroups, each reading 4 MiB twice).
 * Workgroup (k, g, b) takes the k-th of P chunks of L units (vec4s or floats) of the group's channel-major values
 * and writes its mean and sum of squared deviations (two passes over the chunk, the second from cache) to
 * partial[((b*G + g)*P + k)*2 + {0,1}]; GN_STATS_COMBINE_WGSL then merges the chunks (Chan et al.'s pairwise
 * update: M2 = sum M2_k + n_k (mean_k - mean)^2), as precise as the one-workgroup two-pass form.
 */
export const groupNormStatsSplitWgsl = (vec: boolean, WG = 256): string => /* wgsl */ `
${GN_STATS_SPLIT_UNIFORM.wgsl}

@group(0) @binding(0) var<storage, read> inA: array<${vec ? 'vec4f' : 'f32'}>;
@group(0) @binding(1) var<storage, read> inB: array<${vec ? 'vec4f' : 'f32'}>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;
@group(0) @binding(3) var<uniform> p: P;

${STATS_HELPERS(WG)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let k = wg.x;
  let g = wg.y;
  let b = wg.z;
  let cpg = (p.C1 + p.C2) / p.G;
  let c0 = g * cpg;
  let n = p.HW${vec ? ' / 4u' : ''};
  let start = k * p.L;
  let end = min(start + p.L, cpg * n);
  // the chunk's channels, each from its first to its last unit inside the chunk
  var s = ${vec ? 'vec4f(0.0)' : '0.0'};
  for (var c = start / n; c * n < end; c++) {
    let lo = max(start, c * n) - c * n;
    let hi = min(end, c * n + n) - c * n;
    let base = rowBase(b, c0 + c, n);
    if (c0 + c < p.C1) {
      for (var i = lo + lid; i < hi; i += WG) { s += inA[base + i]; }
    } else {
      for (var i = lo + lid; i < hi; i += WG) { s += inB[base + i]; }
    }
  }
  let count = f32((end - start)${vec ? ' * 4u' : ''});
  let mean = wgSum(lid, ${vec ? 's.x + s.y + s.z + s.w' : 's'}) / count;
  var s2 = ${vec ? 'vec4f(0.0)' : '0.0'};
  for (var c = start / n; c * n < end; c++) {
    let lo = max(start, c * n) - c * n;
    let hi = min(end, c * n + n) - c * n;
    let base = rowBase(b, c0 + c, n);
    if (c0 + c < p.C1) {
      for (var i = lo + lid; i < hi; i += WG) { let d = inA[base + i] - mean; s2 += d * d; }
    } else {
      for (var i = lo + lid; i < hi; i += WG) { let d = inB[base + i] - mean; s2 += d * d; }
    }
  }
  let m2 = wgSum(lid, ${vec ? 's2.x + s2.y + s2.z + s2.w' : 's2'});
  if (lid == 0u) {
    let o = ((b * p.G + g) * p.P + k) * 2u;
    partial[o] = mean;
    partial[o + 1u] = m2;
  }
}
`;

/** Merges groupNormStatsSplitWgsl's chunks: one invocation per (batch, group), mean and rstd into stats. */
export const GN_STATS_COMBINE_WGSL = /* wgsl */ `
${GN_STATS_COMBINE_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= p.BG) { return; }
  let total = f32(p.units * p.unitSize);
  var mean = 0.0;
  for (var k = 0u; k < p.P; k++) {
    let nk = f32((min(k * p.L + p.L, p.units) - k * p.L) * p.unitSize);
    mean += nk * partial[(i * p.P + k) * 2u];
  }
  mean /= total;
  var m2 = 0.0;
  for (var k = 0u; k < p.P; k++) {
    let nk = f32((min(k * p.L + p.L, p.units) - k * p.L) * p.unitSize);
    let d = partial[(i * p.P + k) * 2u] - mean;
    m2 += partial[(i * p.P + k) * 2u + 1u] + nk * d * d;
  }
  stats[p.statsOff + i * 2u] = mean;
  stats[p.statsOff + i * 2u + 1u] = inverseSqrt(m2 / total + p.eps);
}
`;
