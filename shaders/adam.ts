// Optimizer kernels over flat f32 parameter buffers (the U-Net's params in expectedParamShapes order).
//
// ADAM_WGSL is torch.optim.Adam's single-tensor step (torch/optim/adam.py, _single_tensor_adam, capturable=False,
// amsgrad=False, maximize=False) in the same float32 op order; the step-dependent scalars are computed by the host in
// float64 as torch does in Python and handed in as f32:
//   g  = grad (+ wd * param                           if weight_decay != 0: grad.add(param, alpha=wd))
//   m  = lerp(m, g, 1 - b1)                            exp_avg.lerp_(grad, 1 - beta1)
//        = m + w (g - m) for w < 0.5, else g - (g - m)(1 - w)   (ATen's lerp)
//   v  = (v * b2) + ((1 - b2) * g) * g                 exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
//   denom = sqrt(v) / sqrt(1 - b2^t) + eps             (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
//   p  = p + ((-lr / (1 - b1^t)) * m) / denom          param.addcdiv_(exp_avg, denom, value=-step_size)

import { flatMain256Wgsl } from './common.ts';
import { uniformLayout } from './uniform.ts';

/** ADAM_WGSL's uniform: the step-dependent scalars (engine/optim.ts adamScalars) as f32. */
export const ADAM_UNIFORM = uniformLayout('P', {
  n: 'u32',
  negStepSize: 'f32',
  lerpW: 'f32',
  beta2: 'f32',
  oneMinusBeta2: 'f32',
  bc2Sqrt: 'f32',
  eps: 'f32',
  weightDecay: 'f32',
});

export const ADAM_WGSL = /* wgsl */ `
${ADAM_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<uniform> p: P;

${flatMain256Wgsl()}
  if (i >= p.n) { return; }
  var g = grad[i];
  let w = param[i];
  if (p.weightDecay != 0.0) { g = g + p.weightDecay * w; }
  let mo = m[i];
  var mn: f32;
  if (abs(p.lerpW) < 0.5) { mn = mo + p.lerpW * (g - mo); } else { mn = g - (g - mo) * (1.0 - p.lerpW); }
  m[i] = mn;
  let vn = v[i] * p.beta2 + p.oneMinusBeta2 * g * g;
  v[i] = vn;
  let denom = sqrt(vn) / p.bc2Sqrt + p.eps;
  param[i] = w + p.negStepSize * mn / denom;
}
`;

/** partial[wg] = sum of x[off + i]^2 over a grid-stride range (the global gradient norm's first stage). */
export const SUMSQ_PARTIAL_UNIFORM = uniformLayout('P', { n: 'u32', off: 'u32' });
export const SUMSQ_PARTIAL_WGSL = /* wgsl */ `
${SUMSQ_PARTIAL_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> partial: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  var s = 0.0;
  for (var i = wg.x * 256u + li; i < p.n; i += nw.x * 256u) {
    let a = x[p.off + i];
    s = fma(a, a, s);
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

/**
 * torch.nn.utils.clip_grad_norm_'s scaling with the norm read on the GPU (no read-back):
 *   coef = min(maxNorm / (norm + 1e-6), 1);  grad[i] *= coef
 */
export const CLIP_SCALE_UNIFORM = uniformLayout('P', { n: 'u32', normOff: 'u32', maxNorm: 'f32' });
export const CLIP_SCALE_WGSL = /* wgsl */ `
${CLIP_SCALE_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> norm: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

${flatMain256Wgsl()}
  if (i >= p.n) { return; }
  let coef = min(p.maxNorm / (norm[p.normOff] + 1e-6), 1.0);
  grad[i] = grad[i] * coef;
}
`;

/** ema[i] = ema[i] * decay + (1 - decay) * param[i]   (ema.mul_(decay).add_(param, alpha=1 - decay)). */
export const EMA_UNIFORM = uniformLayout('P', { n: 'u32', decay: 'f32', oneMinusDecay: 'f32' });
export const EMA_WGSL = /* wgsl */ `
${EMA_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> param: array<f32>;
@group(0) @binding(1) var<storage, read_write> ema: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

${flatMain256Wgsl()}
  if (i >= p.n) { return; }
  ema[i] = ema[i] * p.decay + p.oneMinusDecay * param[i];
}
`;
