// The noise-level embedding: the reference's PositionalEncoding, then Linear layers over [B, K] rows.
//   PositionalEncoding(dim)(nl)[b, i] = sin(nl[b] * exp(-ln(1e4) * i / (dim/2)))   for i <  dim/2
//                                     = cos(nl[b] * exp(-ln(1e4) * (i - dim/2) / (dim/2)))  for i >= dim/2
import { activationWgsl } from './activation.ts';
import { uniformLayout } from './uniform.ts';

export const POSENC_UNIFORM = uniformLayout('P', { B: 'u32', dim: 'u32' });

export const POSENC_WGSL = /* wgsl */ `
${POSENC_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> level: array<f32>;
@group(0) @binding(1) var<storage, read_write> outp: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let idx = gid.x;
  if (idx >= p.B * p.dim) { return; }
  let b = idx / p.dim;
  let i = idx % p.dim;
  let count = p.dim / 2u;
  var k = i;
  if (i >= count) { k = i - count; }
  let step = f32(k) / f32(count);
  let e = level[b] * exp(-9.210340371976184 * step);
  if (i < count) { outp[idx] = sin(e); } else { outp[idx] = cos(e); }
}
`;

// out[outOff + b*N + n] = bias[n] + sum_k W[n, k] * f(in[inOff + b*K + k]), f = identity or the activation (p.actIn: a
// uniform, not an override constant, so both layers of the noise-level MLP share one pipeline).
export const LINEAR_UNIFORM = uniformLayout('P', {
  B: 'u32',
  K: 'u32',
  N: 'u32',
  inOff: 'u32',
  wOff: 'u32',
  bOff: 'u32',
  outOff: 'u32',
  actIn: 'u32',
});

export const LINEAR_WGSL = /* wgsl */ `
${LINEAR_UNIFORM.wgsl}
${activationWgsl()}
@group(0) @binding(0) var<storage, read> params: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read_write> outp: array<f32>;
@group(0) @binding(3) var<uniform> p: P;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let idx = gid.x;
  if (idx >= p.B * p.N) { return; }
  let b = idx / p.N;
  let n = idx % p.N;
  var acc = 0.0;
  for (var k = 0u; k < p.K; k++) {
    var x = inp[p.inOff + b * p.K + k];
    if (p.actIn != 0u) { x = act(x); }
    acc = fma(params[p.wOff + n * p.K + k], x, acc);
  }
  outp[p.outOff + b * p.N + n] = acc + params[p.bOff + n];
}
`;
