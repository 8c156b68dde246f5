// Backward of GroupNorm (+ the activation, shaders/activation.ts) as the forward applies it on a conv's input load:
//   xhat = (x - mean[b, g]) * rstd[b, g],  z = gamma[c] * xhat + beta[c],  y = z (NORM 1) or act(z) (NORM 2, withAct)
// with x = cat(inA, inB) and the forward's saved stats (mean, rstd) per (batch, group). Given dY = dL/dy:
//   dz       = dY * act'(z)   (dY without the activation; Swish's: s(z) * (1 + z * (1 - s(z))), s = sigmoid)
//   dBeta[c] = sum_{b, hw} dz,   dGamma[c] = sum_{b, hw} dz * xhat
//   dx       = rstd * (gamma * dz - mean_g(gamma * dz) - xhat * mean_g(gamma * dz * xhat))   (means over the group)
// Three dispatches: per-(b, c) sums, then per-channel parameter gradients and per-(b, g) means, then the elementwise dx.
// dY comes split like the input (dYA [B, C1, HW], dYB [B, C2, HW]) and dx is written split into dA / dB.
import { activationWgsl } from './activation.ts';
import { flatMain256Wgsl, writeOrAddWgsl } from './common.ts';
import { uniformLayout } from './uniform.ts';

/** gnApplyWgsl's uniform: the input's shape, GroupNorm's groups, where its stats, gamma and beta are, and NORM 2. */
export const GN_APPLY_UNIFORM = uniformLayout('P', {
  B: 'u32',
  C1: 'u32',
  C2: 'u32',
  HW: 'u32',
  G: 'u32',
  statsOff: 'u32',
  gOff: 'u32',
  betaOff: 'u32',
  withAct: 'u32',
});
/** The backward's uniform, shared by its three kernels: the normalisation's, and where each gradient adds. */
export const GN_BWD_UNIFORM = uniformLayout('P', {
  ...GN_APPLY_UNIFORM.fields,
  accumulate: 'u32',
  accumulateParams: 'u32',
});

const COMMON = /* wgsl */ `
${GN_BWD_UNIFORM.wgsl}
${activationWgsl()}
fn xval(b: u32, c: u32, i: u32) -> f32 {
  if (c < p.C1) { return inA[(b * p.C1 + c) * p.HW + i]; }
  return inB[(b * p.C2 + (c - p.C1)) * p.HW + i];
}
fn dyval(b: u32, c: u32, i: u32) -> f32 {
  if (c < p.C1) { return dYA[(b * p.C1 + c) * p.HW + i]; }
  return dYB[(b * p.C2 + (c - p.C1)) * p.HW + i];
}
// dL/dz at one element, and xhat through the out-parameter.
fn dzval(b: u32, c: u32, i: u32, mean: f32, rstd: f32, xhat: ptr<function, f32>) -> f32 {
  let xh = (xval(b, c, i) - mean) * rstd;
  *xhat = xh;
  var d = dyval(b, c, i);
  if (p.withAct != 0u) { d = act_back(d, xh * params[p.gOff + c] + params[p.betaOff + c]); }
  return d;
}
`;

const BINDINGS_X = /* wgsl */ `
@group(0) @binding(0) var<storage, read> params: array<f32>;
@group(0) @binding(1) var<storage, read> inA: array<f32>;
@group(0) @binding(2) var<storage, read> inB: array<f32>;
@group(0) @binding(3) var<storage, read> dYA: array<f32>;
@group(0) @binding(4) var<storage, read> dYB: array<f32>;
@group(0) @binding(5) var<storage, read> stats: array<f32>;
`;

/** scratch[(b * C + c) * 2 + {0, 1}] = sum_hw dz, sum_hw dz * xhat. One workgroup per (c, b). */
export const GN_BWD_REDUCE_WGSL = /* wgsl */ `
${BINDINGS_X}
@group(0) @binding(6) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(7) var<uniform> p: P;
${COMMON}
var<workgroup> r1: array<f32, 256>;
var<workgroup> r2: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let c = wg.x;
  let b = wg.y;
  let C = p.C1 + p.C2;
  let g = c / (C / p.G);
  let so = p.statsOff + (b * p.G + g) * 2u;
  let mean = stats[so];
  let rstd = stats[so + 1u];
  var s1 = 0.0;
  var s2 = 0.0;
  for (var i = li; i < p.HW; i += 256u) {
    var xh: f32;
    let d = dzval(b, c, i, mean, rstd, &xh);
    s1 += d;
    s2 += d * xh;
  }
  r1[li] = s1;
  r2[li] = s2;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s / 2u) {
    if (li < s) { r1[li] += r1[li + s]; r2[li] += r2[li + s]; }
    workgroupBarrier();
  }
  if (li == 0u) {
    scratch[(b * C + c) * 2u] = r1[0];
    scratch[(b * C + c) * 2u + 1u] = r2[0];
  }
}
`;

/**
 * Threads [0, C): grads[betaOff + c] (=|+=) sum_b s1, grads[gOff + c] (=|+=) sum_b s2.
 * Threads [C, C + B*G): scratch[B*C*2 + (b*G + g)*2 + {0, 1}] = mean over the group of gamma*dz, gamma*dz*xhat.
 */
export const GN_BWD_PARAMS_WGSL = /* wgsl */ `
${GN_BWD_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> params: array<f32>;
@group(0) @binding(1) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;
@group(0) @binding(3) var<uniform> p: P;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let C = p.C1 + p.C2;
  let t = gid.x;
  if (t < C) {
    var s1 = 0.0;
    var s2 = 0.0;
    for (var b = 0u; b < p.B; b++) {
      s1 += scratch[(b * C + t) * 2u];
      s2 += scratch[(b * C + t) * 2u + 1u];
    }
    if (p.accumulateParams != 0u) {
      grads[p.betaOff + t] = grads[p.betaOff + t] + s1;
      grads[p.gOff + t] = grads[p.gOff + t] + s2;
    } else {
      grads[p.betaOff + t] = s1;
      grads[p.gOff + t] = s2;
    }
    return;
  }
  let q = t - C;
  if (q >= p.B * p.G) { return; }
  let b = q / p.G;
  let g = q - b * p.G;
  let cpg = C / p.G;
  var a1 = 0.0;
  var a2 = 0.0;
  for (var j = 0u; j < cpg; j++) {
    let c = g * cpg + j;
    let gm = params[p.gOff + c];
    a1 += gm * scratch[(b * C + c) * 2u];
    a2 += gm * scratch[(b * C + c) * 2u + 1u];
  }
  let n = f32(cpg * p.HW);
  scratch[p.B * C * 2u + q * 2u] = a1 / n;
  scratch[p.B * C * 2u + q * 2u + 1u] = a2 / n;
}
`;

/** dx at every element of cat(A, B), written (=|+=) into dA / dB. */
export const GN_BWD_APPLY_WGSL = /* wgsl */ `
${BINDINGS_X}
@group(0) @binding(6) var<storage, read> scratch: array<f32>;
@group(0) @binding(7) var<storage, read_write> dA: array<f32>;
@group(0) @binding(8) var<storage, read_write> dB: array<f32>;
@group(0) @binding(9) var<uniform> p: P;
${COMMON}

${flatMain256Wgsl('idx')}
  let C = p.C1 + p.C2;
  if (idx >= p.B * C * p.HW) { return; }
  let i = idx % p.HW;
  let bc = idx / p.HW;
  let c = bc % C;
  let b = bc / C;
  let g = c / (C / p.G);
  let so = p.statsOff + (b * p.G + g) * 2u;
  let mean = stats[so];
  let rstd = stats[so + 1u];
  var xh: f32;
  let d = dzval(b, c, i, mean, rstd, &xh);
  let mo = p.B * C * 2u + (b * p.G + g) * 2u;
  let v = rstd * (params[p.gOff + c] * d - scratch[mo] - xh * scratch[mo + 1u]);
  if (c < p.C1) {
    let o = (b * p.C1 + c) * p.HW + i;
    ${writeOrAddWgsl('dA', 'o', 'v')}
  } else {
    let o = (b * p.C2 + (c - p.C1)) * p.HW + i;
    ${writeOrAddWgsl('dB', 'o', 'v')}
  }
}
`;

/**
 * The forward's normalisation materialised once: xn[b, c, i] = f(cat(A, B)[b, c, i]) in one [B, C1+C2, HW] buffer,
 * f = GroupNorm (norm 1) or GroupNorm + Swish (norm 2) with the saved stats. The weight gradient then reads xn as a
 * plain input instead of renormalising every element once per kernel tap (9x the exp() calls for a 3x3 conv).
 */
export const gnApplyWgsl = (vec: boolean): string => /* wgsl */ `
@group(0) @binding(0) var<storage, read> params: array<f32>;
@group(0) @binding(1) var<storage, read> inA: array<${vec ? 'vec4f' : 'f32'}>;
@group(0) @binding(2) var<storage, read> inB: array<${vec ? 'vec4f' : 'f32'}>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> xn: array<${vec ? 'vec4f' : 'f32'}>;
@group(0) @binding(5) var<uniform> p: P;
${GN_APPLY_UNIFORM.wgsl}
${activationWgsl()}

// ${vec ? 'four pixels of one channel per invocation (HW is a multiple of 4)' : 'one element per invocation'}
${flatMain256Wgsl('idx')}
  let C = p.C1 + p.C2;
  let n = p.HW${vec ? ' / 4u' : ''};
  if (idx >= p.B * C * n) { return; }
  let i = idx % n;
  let bc = idx / n;
  let c = bc % C;
  let b = bc / C;
  var v: ${vec ? 'vec4f' : 'f32'};
  if (c < p.C1) { v = inA[(b * p.C1 + c) * n + i]; } else { v = inB[(b * p.C2 + (c - p.C1)) * n + i]; }
  let so = p.statsOff + (b * p.G + c / (C / p.G)) * 2u;
  let sc = stats[so + 1u] * params[p.gOff + c];
  v = v * sc + (params[p.betaOff + c] - stats[so] * sc);
  if (p.withAct != 0u) { v = ${vec ? 'act4' : 'act'}(v); }
  xn[idx] = v;
}
`;
