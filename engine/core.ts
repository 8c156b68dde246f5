/// <reference types="@webgpu/types" preserve="true" />
// 'sr3-wgsl/core': the low-level engine for kernel benchmarking and custom pipelines (browser-safe, as the rest of
// engine/ outside engine/node/): the GPU context, the U-Net and its plan, the samplers and schedules, the kernels'
// host functions (each records one dispatch), resampling, the random generator and the upscaling building blocks.
export * from './gpu.ts';
export * as kernels from './kernels.ts';
export * as kernelsBackward from './kernels-backward.ts';
export { UNet, uploadUNetParams, type UNetBuildOptions, type UNetParams, type UNetWeights } from './unet.ts';
export { checkShape, planUNet, packParams, type UNetPlan } from './unet-plan.ts';
export {
  Sampler,
  SAMPLERS,
  stepTable,
  type RunOptions,
  type SamplerBuildOptions,
  type SamplerKind,
  type SamplerSpec,
} from './sampler.ts';
export * from './schedule.ts';
export * from './resample.ts';
export * from './rng.ts';
export * from './upscale.ts';
export { UpscaleCache } from './upscale-cache.ts';
export * from './upscaler.ts';
export * from './image.ts';
export * from './metrics.ts';
export * as weights from '../weights-format/index.ts';
