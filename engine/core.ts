/// <reference types="@webgpu/types" preserve="true" />
// 'sr3-wgsl/core': the low-level engine for kernel benchmarking and custom pipelines (browser-safe, as the rest of
// engine/ outside engine/node/): the GPU context, the U-Net and its plan, the samplers and schedules, the kernels'
// host functions (each records one dispatch), resampling, the random generator, the upscaling building blocks and
// training (TrainGraph: forward, loss, backward and Adam; Trainer: a whole training step as `sr3 train` runs it).
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
export { gaussianBlur } from './ops/train-data.ts';
export { TrainGraph, type TrainGraphOptions, type TrainTarget } from './train.ts';
/**
 * Training without the command line: `Trainer.create(ctx, weights, options)` with the HR crops from a CropSource
 * (`photoCrops(images, patch)` for a set of PixelImages), then `step()` per batch; `state()` and `modelParams()` give
 * what a checkpoint holds and `resume` continues from it. `initParams` gives fresh weights for a config.
 */
export {
  type BlurSpec,
  type CropSource,
  initParams,
  mulberry32,
  photoCrops,
  randomCrop,
  Trainer,
  type TrainerOptions,
  type TrainerState,
} from './trainer.ts';
export * from './resample.ts';
export * from './rng.ts';
export * from './upscale.ts';
export { UpscaleCache } from './upscale-cache.ts';
export * from './upscaler.ts';
export * from './image.ts';
export * from './metrics.ts';
export * as weights from '../weights-format/index.ts';
