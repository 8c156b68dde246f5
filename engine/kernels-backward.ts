// The backward kernels' host functions, as the public 'kernelsBackward' namespace (engine/core.ts) and the tests use
// them: each returns recorded Dispatches (an array where the op takes several passes, encoded in order in one compute
// pass). They live in engine/ops/, one module a family beside its forward; engine/ops/conv2d-backward.ts states the
// conventions (flat gradients, accumulate, scratch buffers).
export { grid256, writeDummy, type BackwardOptions } from './ops/common.ts';
export {
  channelSumBackward,
  conv2dBackward,
  conv2dBackwardInput,
  conv2dBackwardScratchBytes,
  conv2dBackwardWeight,
  convWeightScratchBytes,
  convWeightSplit,
  dxStridedBlock,
  type ConvBackwardSpec,
} from './ops/conv2d-backward.ts';
export { addInto } from './ops/elementwise.ts';
export { attentionBackward, attentionBackwardStatsBytes } from './ops/attention.ts';
export {
  groupNormApply,
  groupNormBackward,
  groupNormBackwardScratchBytes,
  type GroupNormBackwardSpec,
} from './ops/groupnorm.ts';
export { linearBackward, type LinearBackwardSpec } from './ops/linear.ts';
export { loss, reduceFinal, reducePartials, type LossSpec } from './ops/loss.ts';
