// Overlapping tiles of a large image, sampled jointly (MultiDiffusion-style): after every step each tile's result is
// blended into the full-size canvas with weights that ramp down across the overlaps, and the next step reads its tile
// back from the canvas, so neighbouring tiles agree where they meet and no seam forms.
// Tensors are [B, C, H, W]; a tile is the window (oy, ox, th, tw) of the canvas (Hc, Wc).
import { uniformLayout } from './uniform.ts';

/** The three kernels' uniform (shaders/uniform.ts): the canvas, the tile's window, and the overlap ov. */
export const TILE_UNIFORM = uniformLayout('P', {
  B: 'u32',
  C: 'u32',
  Hc: 'u32',
  Wc: 'u32',
  th: 'u32',
  tw: 'u32',
  oy: 'u32',
  ox: 'u32',
  ov: 'u32',
});

const HEADER = /* wgsl */ `
${TILE_UNIFORM.wgsl}
fn flat(gid: vec3u, nwg: vec3u) -> u32 { return gid.x + gid.y * nwg.x * 256u; }
`;

/** tile[b, c, y, x] = canvas[b, c, oy + y, ox + x] */
export const TILE_GATHER_WGSL = /* wgsl */ `${HEADER}
@group(0) @binding(0) var<storage, read> canvas: array<f32>;
@group(0) @binding(1) var<storage, read_write> tile: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  let n = p.B * p.C * p.th * p.tw;
  if (i >= n) { return; }
  let x = i % p.tw;
  let y = (i / p.tw) % p.th;
  let bc = i / (p.tw * p.th);
  tile[i] = canvas[(bc * p.Hc + p.oy + y) * p.Wc + p.ox + x];
}
`;

/**
 * num[b, c, oy + y, ox + x] += w(y, x) tile[b, c, y, x] and den[oy + y, ox + x] += w(y, x), with w ramping linearly
 * from the tile's edge over `ov` pixels on the sides that overlap a neighbour (not on the canvas border).
 */
export const TILE_ACCUMULATE_WGSL = /* wgsl */ `${HEADER}
@group(0) @binding(0) var<storage, read> tile: array<f32>;
@group(0) @binding(1) var<storage, read_write> num: array<f32>;
@group(0) @binding(2) var<storage, read_write> den: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
fn ramp(d: u32, inner: bool) -> f32 {
  if (!inner) { return 1.0; }
  return min(1.0, f32(d + 1u) / f32(p.ov + 1u));
}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  let n = p.B * p.C * p.th * p.tw;
  if (i >= n) { return; }
  let x = i % p.tw;
  let y = (i / p.tw) % p.th;
  let bc = i / (p.tw * p.th);
  let w = ramp(y, p.oy > 0u) * ramp(p.th - 1u - y, p.oy + p.th < p.Hc) * ramp(x, p.ox > 0u) * ramp(p.tw - 1u - x, p.ox + p.tw < p.Wc);
  let j = (bc * p.Hc + p.oy + y) * p.Wc + p.ox + x;
  num[j] += w * tile[i];
  if (bc == 0u) { den[(p.oy + y) * p.Wc + p.ox + x] += w; }
}
`;

/** canvas = num / den (den per pixel, shared by every batch element and channel) */
export const TILE_NORMALIZE_WGSL = /* wgsl */ `${HEADER}
@group(0) @binding(0) var<storage, read> num: array<f32>;
@group(0) @binding(1) var<storage, read> den: array<f32>;
@group(0) @binding(2) var<storage, read_write> canvas: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= p.B * p.C * p.Hc * p.Wc) { return; }
  canvas[i] = num[i] / den[i % (p.Hc * p.Wc)];
}
`;
