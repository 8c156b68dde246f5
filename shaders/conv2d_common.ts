// What the conv kernels share, forward (conv2d.ts, conv2d_mma.ts) and backward (conv2d_backward.ts,
// conv2d_backward_direct.ts): the conv's shape in their uniforms, and the fused input load (the skip concatenation
// read from two buffers, GroupNorm + the activation applied as a value is read), written into each kernel's text by
// these functions so that every kernel reads its input the same way.

/**
 * The fields every conv kernel's uniform starts with: batch, input channels from A and from the concatenated B, the
 * stored input's size (before a fused upsampling), the output's size and channels. The host fills them from the
 * conv's spec (engine/ops/conv2d.ts convShape).
 */
export const CONV_SHAPE_FIELDS = {
  B: 'u32',
  C1: 'u32',
  C2: 'u32',
  Hin: 'u32',
  Win: 'u32',
  Hout: 'u32',
  Wout: 'u32',
  Cout: 'u32',
} as const;

/**
 * `v` = channel `ci` of cat(inA, inB) for image `b` at `pix` within a channel of `hw` values: channels [0, C1) are
 * A's, [C1, C1 + C2) B's (the skip concatenation, never copied). Expects `b` and the uniform `p` in scope.
 */
export function catLoadWgsl(v: string, ci: string, hw: string, pix: string): string {
  return `if (${ci} < p.C1) { ${v} = inA[(b * p.C1 + ${ci}) * ${hw} + ${pix}]; } else { ${v} = inB[(b * p.C2 + (${ci} - p.C1)) * ${hw} + ${pix}]; }`;
}

/**
 * The fused GroupNorm on a value read from the input: `v` = `affine` (the normalisation and gamma / beta, as each
 * kernel folds them) where `norm` (an override constant or a uniform field) is 1 or 2, then the activation where it
 * is 2. Zero padding is applied by the caller after this, as the reference pads the activated map.
 */
export function normActWgsl(v: string, affine: string, norm = 'NORM'): string {
  return `if (${norm} != 0u) { ${v} = ${affine}; if (${norm} == 2u) { ${v} = act(${v}); } }`;
}
