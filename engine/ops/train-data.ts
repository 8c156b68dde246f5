// Training's data kernels (shaders/train.ts): the residual target and the Gaussian-blur augmentation of the
// condition, with the blur's float64 reference.
import type { Dispatch, GpuContext } from '../gpu.ts';
import { rngWorkgroups } from '../rng.ts';
import { BLUR_UNIFORM, BLUR_WGSL, RESIDUAL_UNIFORM, RESIDUAL_WGSL } from '../../shaders/train.ts';

/** out = a - b over n values: the residual target y0 = HR - condition (SRDiff's), on the whole batch. */
export async function residual(
  ctx: GpuContext,
  spec: { n: number },
  bufs: { a: GPUBuffer; b: GPUBuffer; out: GPUBuffer },
): Promise<Dispatch> {
  const pipeline = await ctx.pipeline(RESIDUAL_WGSL, { label: 'residual' });
  const u = ctx.uniform(RESIDUAL_UNIFORM.pack(spec, 'residual'));
  return {
    pipeline,
    bindGroup: ctx.bind(pipeline, [bufs.a, bufs.b, bufs.out, u]),
    workgroups: rngWorkgroups(spec.n),
    label: 'residual',
  };
}

/**
 * The Gaussian-blur augmentation of the condition (SR3 and Cascaded Diffusion Models blur the low-resolution input
 * at training time): input [B, C, H, W] blurred into output with sigma[b] per batch element (0: unchanged), over a
 * (2 radius + 1)^2 window with replicated edges.
 */
export async function gaussianBlur(
  ctx: GpuContext,
  spec: { B: number; C: number; H: number; W: number; radius: number; label?: string },
  bufs: { sigma: GPUBuffer; input: GPUBuffer; output: GPUBuffer },
): Promise<Dispatch> {
  if (!Number.isInteger(spec.radius) || spec.radius < 1 || spec.radius > 8)
    throw new Error(`blur radius must be an integer in 1..8, got ${spec.radius}`);
  const n = spec.B * spec.C * spec.H * spec.W;
  const pipeline = await ctx.pipeline(BLUR_WGSL, { label: 'blur' });
  const u = ctx.uniform(BLUR_UNIFORM.pack({ n, C: spec.C, H: spec.H, W: spec.W, r: spec.radius }, 'blur'));
  return {
    pipeline,
    bindGroup: ctx.bind(pipeline, [bufs.sigma, bufs.input, bufs.output, u]),
    workgroups: rngWorkgroups(n),
    label: spec.label ?? 'blur',
  };
}

/** The blur's reference on the CPU, float64: what gaussianBlur computes (for tests, and the formula in one place). */
export function gaussianBlurRef(
  x: Float32Array,
  sigma: ArrayLike<number>,
  B: number,
  C: number,
  H: number,
  W: number,
  radius: number,
): Float64Array {
  const out = new Float64Array(x.length);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++) {
      const base = (b * C + c) * H * W;
      const s = sigma[b];
      for (let y = 0; y < H; y++)
        for (let xx = 0; xx < W; xx++) {
          if (!(s > 0)) {
            out[base + y * W + xx] = x[base + y * W + xx];
            continue;
          }
          let acc = 0;
          let ws = 0;
          for (let dy = -radius; dy <= radius; dy++)
            for (let dx = -radius; dx <= radius; dx++) {
              const w = Math.exp(-(dx * dx + dy * dy) / (2 * s * s));
              const sy = Math.min(H - 1, Math.max(0, y + dy));
              const sx = Math.min(W - 1, Math.max(0, xx + dx));
              acc += w * x[base + sy * W + sx];
              ws += w;
            }
          out[base + y * W + xx] = acc / ws;
        }
    }
  return out;
}
