// One reverse-diffusion step, fused: every sampler is
//   x0 = r1 * y - r2 * eps            (optionally clamped to [-1, 1])
//   y' = cx * x0 + cy * y + ce * eps + cp1 * x0_prev + cp2 * x0_prev2 + s * z
// with per-step coefficients from a table indexed by a GPU-side step counter, so steps replay without CPU writes.
// Table row t (STEP_ROW = 12 floats, engine/sampler.ts stepTable): [noise level, r1, r2, cx, cy, ce, s,
// sqrt(gamma_{t-1}), cp1, cp2, 0, 0]. The multistep solvers (DPM-Solver++ 2M, UniPC) keep the x0 predictions of the
// previous steps in a history buffer ([prev | prev2], n values each) that the same kernel shifts.
import { uniformLayout } from './uniform.ts';

// The kernels' uniforms, each declared once for the WGSL struct and the host's packer (shaders/uniform.ts).
export const STEP_BEGIN_UNIFORM = uniformLayout('P', { B: 'u32' });
/** zStride: the step noise's stride per step (n when every step's noise is provided, 0 when one buffer is refilled) */
export const STEP_UPDATE_UNIFORM = uniformLayout('P', { n: 'u32', zStride: 'u32' });
export const COUNTER_STEP_UNIFORM = uniformLayout('P', { delta: 'u32' });
export const CONSISTENCY_UNIFORM = uniformLayout('P', { n: 'u32' });
/** per: elements per batch element (each has its own noise level) */
export const NOISIFY_UNIFORM = uniformLayout('P', { n: 'u32', per: 'u32' });

/** Start of a step: noise_level[b] = table[t][0] for every batch element, t = counter[0]. */
export const STEP_BEGIN_WGSL = /* wgsl */ `
${STEP_BEGIN_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> table: array<f32>;
@group(0) @binding(1) var<storage, read> counter: array<u32>;
@group(0) @binding(2) var<storage, read_write> level: array<f32>;
@group(0) @binding(3) var<uniform> p: P;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (gid.x >= p.B) { return; }
  level[gid.x] = table[counter[0] * 12u];
}
`;

export const STEP_UPDATE_WGSL = /* wgsl */ `
${STEP_UPDATE_UNIFORM.wgsl}
override CLIP: bool = false;
// how many earlier x0 predictions the solver keeps (0, 1 or 2)
override HISTORY: u32 = 0u;
@group(0) @binding(0) var<storage, read> table: array<f32>;
@group(0) @binding(1) var<storage, read> counter: array<u32>;
@group(0) @binding(2) var<storage, read> eps: array<f32>;
@group(0) @binding(3) var<storage, read> z: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> hist: array<f32>;
@group(0) @binding(6) var<uniform> p: P;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let t = counter[0];
  let c = t * 12u;
  let yv = y[i];
  let e = eps[i];
  var x0 = table[c + 1u] * yv - table[c + 2u] * e;
  if (CLIP) { x0 = clamp(x0, -1.0, 1.0); }
  var out = table[c + 3u] * x0 + table[c + 4u] * yv + table[c + 5u] * e;
  let s = table[c + 6u];
  if (s != 0.0) { out += s * z[t * p.zStride + i]; }
  if (HISTORY > 0u) {
    // a zero coefficient skips the read: the first steps' history holds an earlier run's values (or nothing)
    let prev = hist[i];
    let c1 = table[c + 8u];
    if (c1 != 0.0) { out += c1 * prev; }
    if (HISTORY > 1u) {
      let c2 = table[c + 9u];
      if (c2 != 0.0) { out += c2 * hist[p.n + i]; }
      hist[p.n + i] = prev;
    }
    hist[i] = x0;
  }
  y[i] = out;
}
`;

/** counter[0] += delta (wrapping). */
export const COUNTER_STEP_WGSL = /* wgsl */ `
${COUNTER_STEP_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read_write> counter: array<u32>;
@group(0) @binding(1) var<uniform> p: P;
@compute @workgroup_size(1)
fn main() { counter[0] = counter[0] + p.delta; }
`;

// Consistency with the input (ILVR-style low-frequency replacement), after a step t has made y_{t-1}:
//   y <- y - U(D(y - sqrt(1 - g) z')) + sqrt(g) U(D(c)),   g = gamma_{t-1} = table[t][7]^2
// i.e. the low frequencies of y are replaced by those of the condition noised to the same level (linearity of U D
// lets one down/up pass do it). PREP writes w = y - sqrt(1 - g) z'; APPLY writes y = y - u + sqrt(g) udc.
export const CONSISTENCY_WGSL = /* wgsl */ `
${CONSISTENCY_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> table: array<f32>;
@group(0) @binding(1) var<storage, read> counter: array<u32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> p: P;

fn index(gid: vec3u, nwg: vec3u) -> u32 { return gid.x + gid.y * nwg.x * 256u; }

// prep: a = y, b = z', writes w into the y binding; apply: a = u = U(D(w)), b = udc = U(D(c)), updates y.
@compute @workgroup_size(256)
fn prep(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = index(gid, nwg);
  if (i >= p.n) { return; }
  let sg = table[counter[0] * 12u + 7u];
  y[i] = a[i] - sqrt(max(0.0, 1.0 - sg * sg)) * b[i];
}

@compute @workgroup_size(256)
fn apply(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = index(gid, nwg);
  if (i >= p.n) { return; }
  let sg = table[counter[0] * 12u + 7u];
  y[i] = y[i] - a[i] + sg * b[i];
}
`;

// Algorithm 1's noising, per batch element b: y[b] = sg[b] * y0[b] + sqrt(1 - sg[b]^2) * noise[b], sg = sqrt(gamma).
export const NOISIFY_WGSL = /* wgsl */ `
${NOISIFY_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> sg: array<f32>;
@group(0) @binding(1) var<storage, read> y0: array<f32>;
@group(0) @binding(2) var<storage, read> noise: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: P;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let s = sg[i / p.per];
  y[i] = s * y0[i] + sqrt(1.0 - s * s) * noise[i];
}
`;
