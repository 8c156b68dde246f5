// Backward of the noise-level embedding's Linear layers (shaders/embedding.ts LINEAR_WGSL):
//   out[b, n] = bias[n] + sum_k W[n, k] f(x[b, k]),  f = identity or the activation (ACT_IN)
// Gradients, with dOut read at dOutOff + b*N + n:
//   dIn[dInOff + b*K + k] (=|+=) f'(x[b, k]) * sum_n W[n, k] dOut[b, n]          LINEAR_DIN_WGSL
//   grads[wOff + n*K + k] (=|+=) sum_b dOut[b, n] f(x[b, k]),
//   grads[bOff + n]       (=|+=) sum_b dOut[b, n]                               LINEAR_DW_WGSL
// The positional encoding needs no gradient (its input is data), so the chain stops at the first Linear's weights.
import { activationWgsl } from './activation.ts';
import { uniformLayout } from './uniform.ts';

export const LINEAR_DIN_UNIFORM = uniformLayout('P', {
  B: 'u32',
  K: 'u32',
  N: 'u32',
  inOff: 'u32',
  wOff: 'u32',
  dOutOff: 'u32',
  dInOff: 'u32',
});

export const LINEAR_DIN_WGSL = /* wgsl */ `
${LINEAR_DIN_UNIFORM.wgsl}
override ACT_IN: bool = false;
${activationWgsl()}
override ACCUMULATE: bool = false;
@group(0) @binding(0) var<storage, read> params: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> dOut: array<f32>;
@group(0) @binding(3) var<storage, read_write> dIn: array<f32>;
@group(0) @binding(4) var<uniform> p: P;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let idx = gid.x;
  if (idx >= p.B * p.K) { return; }
  let b = idx / p.K;
  let k = idx % p.K;
  var s = 0.0;
  for (var n = 0u; n < p.N; n++) { s = fma(params[p.wOff + n * p.K + k], dOut[p.dOutOff + b * p.N + n], s); }
  if (ACT_IN) { s = act_back(s, inp[p.inOff + idx]); }
  let o = p.dInOff + idx;
  if (ACCUMULATE) { dIn[o] = dIn[o] + s; } else { dIn[o] = s; }
}
`;

export const LINEAR_DW_UNIFORM = uniformLayout('P', {
  B: 'u32',
  K: 'u32',
  N: 'u32',
  inOff: 'u32',
  wOff: 'u32',
  bOff: 'u32',
  dOutOff: 'u32',
});

export const LINEAR_DW_WGSL = /* wgsl */ `
${LINEAR_DW_UNIFORM.wgsl}
override ACT_IN: bool = false;
${activationWgsl()}
override ACCUMULATE: bool = false;
@group(0) @binding(0) var<storage, read> inp: array<f32>;
@group(0) @binding(1) var<storage, read> dOut: array<f32>;
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;
@group(0) @binding(3) var<uniform> p: P;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let idx = gid.x;
  let NK = p.N * p.K;
  var s = 0.0;
  var o: u32;
  if (idx < NK) {
    let n = idx / p.K;
    let k = idx % p.K;
    for (var b = 0u; b < p.B; b++) {
      var x = inp[p.inOff + b * p.K + k];
      if (ACT_IN) { x = act(x); }
      s = fma(dOut[p.dOutOff + b * p.N + n], x, s);
    }
    o = p.wOff + idx;
  } else if (idx < NK + p.N) {
    let n = idx - NK;
    for (var b = 0u; b < p.B; b++) { s += dOut[p.dOutOff + b * p.N + n]; }
    o = p.bOff + n;
  } else {
    return;
  }
  if (ACCUMULATE) { grads[o] = grads[o] + s; } else { grads[o] = s; }
}
`;
