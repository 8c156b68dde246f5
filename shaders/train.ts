// Kernels that only training uses: the residual target and the Gaussian-blur augmentation of the condition.
import { uniformLayout } from './uniform.ts';

// The kernels' uniforms, each declared once for the WGSL struct and the host's packer (shaders/uniform.ts).
export const RESIDUAL_UNIFORM = uniformLayout('P', { n: 'u32' });
/** r: the window's radius (i32: the loops run from -r to r) */
export const BLUR_UNIFORM = uniformLayout('P', { n: 'u32', C: 'u32', H: 'u32', W: 'u32', r: 'i32' });

/** out[i] = a[i] - b[i]: the residual target y0 = HR - condition (SRDiff's), on the whole batch. */
export const RESIDUAL_WGSL = /* wgsl */ `
${RESIDUAL_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  out[i] = a[i] - b[i];
}
`;

/**
 * Gaussian blur of a [B, C, H, W] batch, one sigma per batch element (sigma[b] <= 0 copies the image): a
 * (2r+1) x (2r+1) window of weights exp(-(dx^2 + dy^2) / (2 sigma^2)) normalised to sum 1, edges replicated.
 */
export const BLUR_WGSL = /* wgsl */ `
${BLUR_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> sigma: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let xx = i32(i % p.W);
  let yy = i32((i / p.W) % p.H);
  let plane = i / (p.W * p.H);
  let s = sigma[plane / p.C];
  if (s <= 0.0) { out[i] = x[i]; return; }
  let base = plane * p.H * p.W;
  let k = -1.0 / (2.0 * s * s);
  var acc = 0.0;
  var wsum = 0.0;
  for (var dy = -p.r; dy <= p.r; dy++) {
    let sy = u32(clamp(yy + dy, 0, i32(p.H) - 1));
    for (var dx = -p.r; dx <= p.r; dx++) {
      let sx = u32(clamp(xx + dx, 0, i32(p.W) - 1));
      let w = exp(f32(dx * dx + dy * dy) * k);
      acc += w * x[base + sy * p.W + sx];
      wsum += w;
    }
  }
  out[i] = acc / wsum;
}
`;
