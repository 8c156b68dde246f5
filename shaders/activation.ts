// The U-Net's activation, declared once: what every kernel applies after a GroupNorm (a conv's fused input load, the
// materialised normalisation, their backward) and on the noise-level MLP's hidden layer. Each kernel that applies it
// includes activationWgsl(), which defines
//   act(x: f32) -> f32, act4(x: vec4f) -> vec4f   f(x)
//   act_back(dy: f32, x: f32) -> f32              dy * f'(x), the backward through it
// for the activation the override constant ACT picks (its index in ACTIVATIONS: the host passes actConstant(spec.act)).
// An override rather than a generated text, so the kernels stay constant strings and one source serves every
// activation; the shader compiler drops the branches not taken.

import type { UNetActivation } from '../weights-format/config.ts';

export interface ActivationWgsl {
  /** WGSL statements of f(x) for x of type T (f32 or vec4f: write T(1.0) for a constant of x's type) */
  readonly f: string;
  /** WGSL statements of dy * f'(x) for x and dy of type f32 (in the order the kernels always multiplied) */
  readonly back: string;
}

/** The activations a model can use, by name; their order gives ACT's values (0 is the default, Swish). */
export const ACTIVATIONS = {
  /** Swish (SiLU), x * sigmoid(x): the reference SR3's */
  swish: {
    f: 'return x / (T(1.0) + exp(-x));',
    back: 'let s = 1.0 / (1.0 + exp(-x));\n  return dy * s * (1.0 + x * (1.0 - s));',
  },
  /**
   * GELU, tanh approximation (torch's approximate='tanh'): 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3);
   * f'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2), t = tanh(u). u is clamped to +-10, where
   * tanh is 1 in f32, so a tanh computed from exponentials cannot overflow into NaN.
   */
  gelu: {
    f: 'let u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), T(-10.0), T(10.0));\n  return 0.5 * x * (T(1.0) + tanh(u));',
    back:
      'let u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -10.0, 10.0);\n  let t = tanh(u);\n' +
      '  return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 0.134145 * x * x));',
  },
} as const satisfies Record<UNetActivation, ActivationWgsl>;

export type Activation = UNetActivation;

const names = Object.keys(ACTIVATIONS) as Activation[];

/** The override constant that selects `act` in a kernel that includes activationWgsl(). */
export function actConstant(act: Activation = 'swish'): { ACT: number } {
  const i = names.indexOf(act);
  if (i < 0) throw new Error(`unknown activation ${String(act)} (${names.join(', ')})`);
  return { ACT: i };
}

/** The WGSL of `act`, `act4` and `act_back` for every activation, selected by the override ACT. */
export function activationWgsl(): string {
  const fn = (sig: string, body: (a: ActivationWgsl) => string): string => {
    const cases = names.map((n, i) => {
      const label = i === 0 ? 'default' : `case ${i}u`;
      return `    ${label}: {\n      ${body(ACTIVATIONS[n]).replaceAll('\n', '\n    ')}\n    }`;
    });
    return `fn ${sig} {\n  switch ACT {\n${cases.join('\n')}\n  }\n}`;
  };
  return [
    'override ACT: u32 = 0u; // the activation: shaders/activation.ts ACTIVATIONS',
    fn('act(x: f32) -> f32', (a) => a.f.replaceAll('T(', 'f32(')),
    fn('act4(x: vec4f) -> vec4f', (a) => a.f.replaceAll('T(', 'vec4f(')),
    fn('act_back(dy: f32, x: f32) -> f32', (a) => a.back),
  ].join('\n');
}
