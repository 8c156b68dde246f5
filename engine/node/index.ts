/// <reference types="@webgpu/types" preserve="true" />
// The package's main entry (`import ... from 'sr3-wgsl'`): the Node API. An upscaler you build once and reuse, the
// device, models, and the file and buffer helpers. The page-safe core is 'sr3-wgsl/browser'; the kernels and the
// U-Net for custom pipelines are 'sr3-wgsl/core'.
export { bundledModelPath, createUpscaler, loadModelFrom, readInput, toPng } from './api.ts';
export type { ImageInput, ModelInput, NodeUpscaler, NodeUpscaleResult, UpscalerOptions } from './api.ts';
export { checkSamplingOptions, createUpscalerCore, toPixelImage } from '../upscaler.ts';
export type {
  PixelsIn,
  SamplingOptions,
  UpscaleCallOptions,
  UpscaleResult,
  Upscaler,
  UpscalerCoreOptions,
} from '../upscaler.ts';
export { DEFAULT_DAWN_FLAGS, dawnFlagsFromEnv, openDevice, type NodeDeviceOptions } from './device.ts';
export { openModel, type OpenModelOptions } from './model.ts';
export { decodeImage, readImage } from './image-io.ts';
export { decodePng, encodePng, readPng, writePng, PngError, type Image } from './png.ts';
export { GpuContext, GpuError, type GpuContextOptions } from '../gpu.ts';
export { imageToTensors, tensorsToImage, type PixelImage } from '../image.ts';
export { SAMPLERS, type SamplerKind } from '../sampler.ts';
export {
  bicubicUpscale,
  conditionRecipe,
  DEFAULT_STEPS,
  defaultSchedule,
  upscaleTensor,
  type Tensor3,
  type UpscaleOptions,
} from '../upscale.ts';
export { convertCheckpoint, describeModel, encodeModel, loadModel, type SR3Model } from '../../weights-format/index.ts';
// Upscaling jobs on a Redis queue (BullMQ, optional dependency: loaded only when these are called)
export { DEFAULT_QUEUE, enqueueUpscale, MAX_INLINE_BYTES, queueStatus, watchUpscales } from './queue.ts';
export type {
  EnqueueOptions,
  QueueStatus,
  UpscaleJobData,
  UpscaleJobProgress,
  UpscaleJobResult,
  UpscaleRequest,
  WatchState,
} from './queue.ts';
