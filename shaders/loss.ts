// Losses between pred and target (same length n), as the reference trains (nn.L1Loss / nn.MSELoss with
// reduction 'sum') or with 'mean':
//   L1: loss = r * sum |d|,   dL/dpred = r * sign(d)   (sign(0) = 0, as torch.sign)
//   L2: loss = r * sum d^2,   dL/dpred = r * 2 d
// d = pred - target, r = 1 (sum) or 1/n (mean), times an optional extra scale. LOSS_PARTIAL_WGSL writes the gradient
// elementwise and one partial sum per workgroup (grid-stride); REDUCE_FINAL_WGSL (one workgroup) sums the partials
// into the value on the GPU.
import { uniformLayout } from './uniform.ts';

export const LOSS_PARTIAL_UNIFORM = uniformLayout('P', {
  n: 'u32',
  predOff: 'u32',
  targetOff: 'u32',
  gradOff: 'u32',
  gradScale: 'f32',
});

export const LOSS_PARTIAL_WGSL = /* wgsl */ `
${LOSS_PARTIAL_UNIFORM.wgsl}
override L2: bool = false;
@group(0) @binding(0) var<storage, read> pred: array<f32>;
@group(0) @binding(1) var<storage, read> tgt: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;
@group(0) @binding(4) var<uniform> p: P;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  let stride = nw.x * 256u;
  var s = 0.0;
  for (var i = wg.x * 256u + li; i < p.n; i += stride) {
    let d = pred[p.predOff + i] - tgt[p.targetOff + i];
    if (L2) {
      s = fma(d, d, s);
      grad[p.gradOff + i] = 2.0 * d * p.gradScale;
    } else {
      s += abs(d);
      grad[p.gradOff + i] = sign(d) * p.gradScale;
    }
  }
  red[li] = s;
  workgroupBarrier();
  for (var k = 128u; k > 0u; k = k / 2u) {
    if (li < k) { red[li] += red[li + k]; }
    workgroupBarrier();
  }
  if (li == 0u) { partial[wg.x] = red[0]; }
}
`;

/** out[outOff] = scale * sum(partial[0..count)), or sqrt of it (SQRT). One workgroup. */
export const REDUCE_FINAL_UNIFORM = uniformLayout('P', { count: 'u32', outOff: 'u32', scale: 'f32' });

export const REDUCE_FINAL_WGSL = /* wgsl */ `
${REDUCE_FINAL_UNIFORM.wgsl}
override SQRT: bool = false;
@group(0) @binding(0) var<storage, read> partial: array<f32>;
@group(0) @binding(1) var<storage, read_write> outp: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
  var s = 0.0;
  for (var i = li; i < p.count; i += 256u) { s += partial[i]; }
  red[li] = s;
  workgroupBarrier();
  for (var k = 128u; k > 0u; k = k / 2u) {
    if (li < k) { red[li] += red[li + k]; }
    workgroupBarrier();
  }
  if (li == 0u) {
    var v = red[0] * p.scale;
    if (SQRT) { v = sqrt(red[0]) * p.scale; }
    outp[p.outOff] = v;
  }
}
`;
