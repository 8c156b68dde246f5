// Elementwise host code shared by several ops' backward and the trainer: adding one gradient into another (the
// residual's pass-through, a skip tensor's second consumer).
import type { Dispatch, GpuContext } from '../gpu.ts';
import { ADD_UNIFORM, ADD_WGSL } from '../../shaders/conv2d_backward.ts';
import { grid256, noAlias, type BackwardOptions } from './common.ts';

/** dst[dstOff + i] (=|+=) scale * src[srcOff + i] for i < n: the residual add's pass-through into an existing gradient. */
export async function addInto(
  ctx: GpuContext,
  spec: { n: number; dstOff?: number; srcOff?: number; scale?: number; label?: string },
  bufs: { src: GPUBuffer; dst: GPUBuffer },
  opts: BackwardOptions = { accumulate: true },
): Promise<Dispatch> {
  const L = spec.label ?? 'add';
  noAlias(L, { dst: bufs.dst }, { src: bufs.src });
  const pipeline = await ctx.pipeline(ADD_WGSL, { label: 'add' });
  const ub = ctx.uniform(
    ADD_UNIFORM.pack(
      {
        n: spec.n,
        dstOff: spec.dstOff ?? 0,
        srcOff: spec.srcOff ?? 0,
        accumulate: opts.accumulate === false ? 0 : 1,
        scale: spec.scale ?? 1,
      },
      L,
    ),
    `${L}.u`,
  );
  const bindGroup = ctx.bind(pipeline, [bufs.src, bufs.dst, ub], L);
  return { pipeline, bindGroup, workgroups: grid256(ctx, spec.n, L), label: L };
}
