// The forward kernels' host functions, as the public 'kernels' namespace (engine/core.ts) and the tests use them: each
// checks its shapes, creates (cached) pipelines and returns a recorded Dispatch with its bind group and uniforms, ready
// to be replayed any number of times. They live in engine/ops/, one module a family with its backward beside it.
export { CONV_KERNELS, MMA_SUBGROUPS, type ConvKernel } from './options.ts';
export { checkWorkgroups, dummy, grid, scratchBytes, sharedScratch, splitKScratchBytes, u32s } from './ops/common.ts';
export {
  checkEngineOptions,
  conv2d,
  convOutSize,
  directBlock,
  mmaShape,
  mmaSupport,
  splitK,
  tiledShape,
  type ConvSpec,
  type MmaSupport,
} from './ops/conv2d.ts';
export { attention } from './ops/attention.ts';
export { groupNormStats, type GroupNormSpec } from './ops/groupnorm.ts';
export { linear, positionalEncoding } from './ops/linear.ts';
