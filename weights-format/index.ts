// sr3-wgsl weights format: the public API (browser-safe; Node file I/O lives in ./node.ts).

export type { DType } from './dtypes.ts';
export { dtypeSize, isFloatDType, f32ToF16Bits, f16BitsToF32, f32ToBF16Bits, bf16BitsToF32 } from './dtypes.ts';
export type { TensorEntry } from './safetensors.ts';
export {
  readSafetensors,
  writeSafetensors,
  toFloat32,
  f32Entry,
  castFloat,
  shapeNumel,
  nonFinite,
} from './safetensors.ts';
export type { UNetConfig } from './config.ts';
export { resolveAttentionLevels, validateConfig, normalizedChannels, checkNormGroups } from './config.ts';
export { expectedParamShapes, inferConfig, diffParams, paramCount } from './unet.ts';
export type { Schedule } from './schedule.ts';
export { makeBetas, detectSchedule, linspace } from './schedule.ts';
export type { ConditionSpec, ParsedOptions } from './options.ts';
export { stripJsonComments, parseReferenceOptions } from './options.ts';
export type { SR3Model, ConvertOptions, ConvertResult, ModelSummary } from './model.ts';
export {
  FORMAT_NAME,
  FORMAT_VERSION,
  SCHEDULE_BUFFERS,
  loadModel,
  encodeModel,
  convertStateDict,
  convertCheckpoint,
  convertCheckpointAsync,
  describeModel,
  sniffFormat,
  openModelBytes,
} from './model.ts';
export type { PthStateDict } from './pth.ts';
export { readPth, readPthAsync } from './pth.ts';
export { unpickle } from './pickle.ts';
export type { InflateRaw, InflateRawSync } from './zip.ts';
export { webInflateRaw } from './zip.ts';
