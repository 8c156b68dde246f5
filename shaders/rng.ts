// Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11;
// the generator of cuRAND, JAX and NumPy's Philox) and Box-Muller for Gaussians.
//
// Element i of a fill is lane i % 4 of philox(counter = (i / 4, stream, sub, 0), key = (seedLo, seedHi)); lanes
// (0, 1) and (2, 3) are Box-Muller pairs. No state: any element can be computed alone, so a fill is reproducible run
// to run and independent of dispatch shape, and a new `stream` (one per sampling step) gives fresh noise without
// reseeding from the CPU.
//
// WGSL has no 64-bit integers, so the 32x32 -> 64-bit products are assembled from 16-bit halves.
import { uniformLayout } from './uniform.ts';

const PHILOX_FNS = /* wgsl */ `
const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

// (hi, lo) of the 64-bit product a * b.
fn mulhilo(a: u32, b: u32) -> vec2u {
  let a0 = a & 0xFFFFu;
  let a1 = a >> 16u;
  let b0 = b & 0xFFFFu;
  let b1 = b >> 16u;
  let p00 = a0 * b0;
  let p01 = a0 * b1;
  let p10 = a1 * b0;
  let p11 = a1 * b1;
  let mid = (p00 >> 16u) + (p01 & 0xFFFFu) + (p10 & 0xFFFFu);
  let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
  return vec2u(hi, a * b);
}

fn philox4x32_10(ctr_in: vec4u, key_in: vec2u) -> vec4u {
  var c = ctr_in;
  var k = key_in;
  for (var r = 0u; r < 10u; r++) {
    if (r > 0u) { k = k + vec2u(PHILOX_W0, PHILOX_W1); }
    let p0 = mulhilo(PHILOX_M0, c.x);
    let p1 = mulhilo(PHILOX_M1, c.z);
    c = vec4u(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
  }
  return c;
}

// A u32 to a float in (0, 1): the top 23 bits plus one half, exact in f32 (never 0, never 1).
fn u01(x: u32) -> f32 {
  return (f32(x >> 9u) + 0.5) * 1.1920928955078125e-7;
}

const PI: f32 = 3.141592653589793;

const LN2: f32 = 0.6931471805599453;

// ln(u) for u in (0, 1) to ~1 ulp of the result. WGSL's log() may be off by 2^-21 absolute near 1 (lavapipe is),
// which is a large relative error in the small radii Box-Muller makes from u near 1. Here: u = m 2^e with m in
// [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s), s = (m-1)/(m+1) (m-1 exact), |s| <= 0.172, series to s^11 (error < 1e-11).
fn ln_unit(u: f32) -> f32 {
  let fe = frexp(u);
  var m = fe.fract;
  var e = fe.exp;
  if (m < 0.70710678) {
    m = m * 2.0;
    e = e - 1;
  }
  let s = (m - 1.0) / (m + 1.0);
  let s2 = s * s;
  let poly = 1.0 + s2 * (0.33333333 + s2 * (0.2 + s2 * (0.14285714 + s2 * (0.11111111 + s2 * 0.09090909))));
  return 2.0 * s * poly + f32(e) * LN2;
}

// Box-Muller: two uniforms to two independent standard normals. The angle is pi * (2 u - 1), in (-pi, pi) (2 u - 1 is
// exact in f32), so cos and sin see no argument over pi: their f32 error stays at a few ulp of the argument.
fn box_muller(x: u32, y: u32) -> vec2f {
  let r = sqrt(-2.0 * ln_unit(u01(x)));
  let theta = PI * (2.0 * u01(y) - 1.0);
  return vec2f(r * cos(theta), r * sin(theta));
}
`;

/**
 * The fills' uniform (shaders/uniform.ts): n elements written from out[offset], the key (seedLo, seedHi), counter
 * word 1 `stream` (added to streamTable[slot] in the table variant), counter word 2 `sub` (e.g. the sample or image
 * index), and `base`, counter word 0 of the first value's block (a fill can draw a stream's values from element
 * 4 base on).
 */
export const RNG_UNIFORM = uniformLayout('P', {
  n: 'u32',
  offset: 'u32',
  seedLo: 'u32',
  seedHi: 'u32',
  stream: 'u32',
  sub: 'u32',
  slot: 'u32',
  base: 'u32',
});
const PARAMS = RNG_UNIFORM.wgsl;

/** The counter advance's uniform: table[slot] += delta. */
export const COUNTER_ADD_UNIFORM = uniformLayout('Q', { slot: 'u32', delta: 'u32' });

/**
 * Gaussian fill: out[offset + i] = N(0,1) sample i, i < n. With `streamTable`, the stream is
 * p.stream + streamTable[p.slot], read on the GPU (a sampler's step counter), so one recorded dispatch serves every step.
 */
export function gaussianWgsl(streamTable: boolean): string {
  return /* wgsl */ `
${PARAMS}
${PHILOX_FNS}
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> p: P;
${streamTable ? '@group(0) @binding(2) var<storage, read> streamTable: array<u32>;' : ''}

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let block = g.x + g.y * (nwg.x * WG);
  let first = block * 4u;
  if (first >= p.n) { return; }
  let stream = p.stream${streamTable ? ' + streamTable[p.slot]' : ''};
  let r = philox4x32_10(vec4u(block + p.base, stream, p.sub, 0u), vec2u(p.seedLo, p.seedHi));
  let z01 = box_muller(r.x, r.y);
  let z23 = box_muller(r.z, r.w);
  let z = array<f32, 4>(z01.x, z01.y, z23.x, z23.y);
  for (var j = 0u; j < 4u; j++) {
    if (first + j < p.n) { out[p.offset + first + j] = z[j]; }
  }
}
`;
}

/** Raw Philox words: out[4 b + j] = word j of philox((b, stream, sub, 0), seed) for 4 b + j < n (for tests and tools). */
export const PHILOX_RAW_WGSL = /* wgsl */ `
${PARAMS}
${PHILOX_FNS}
@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<uniform> p: P;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let block = g.x + g.y * (nwg.x * WG);
  let first = block * 4u;
  if (first >= p.n) { return; }
  let r = philox4x32_10(vec4u(block + p.base, p.stream, p.sub, 0u), vec2u(p.seedLo, p.seedHi));
  let w = array<u32, 4>(r.x, r.y, r.z, r.w);
  for (var j = 0u; j < 4u; j++) {
    if (first + j < p.n) { out[p.offset + first + j] = w[j]; }
  }
}
`;

/** Adds `delta` (wrapping) to table[slot]: advances a GPU-side step counter between recorded steps. */
export const COUNTER_ADD_WGSL = /* wgsl */ `
${COUNTER_ADD_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read_write> table: array<u32>;
@group(0) @binding(1) var<uniform> q: Q;
@compute @workgroup_size(1)
fn main() {
  table[q.slot] = table[q.slot] + q.delta;
}
`;
