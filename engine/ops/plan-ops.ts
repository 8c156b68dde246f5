// The U-Net plan's ops (engine/unet-plan.ts PlanOp) as one table keyed by kind: each op family's module gives its
// entry (forward recorder, backward recorder, parameter ranges, backward scratch), so recording a plan
// (engine/unet.ts recordOp) and walking it backwards (engine/train.ts) look the op up instead of switching on it.
// Adding a kind to PlanOp without an entry here is a type error.
import type { Dispatch, GpuContext } from '../gpu.ts';
import type { PlanOp, PTensor } from '../unet-plan.ts';
import { attentionOp } from './attention.ts';
import { conv2dOp } from './conv2d-backward.ts';
import { groupNormStatsOp } from './groupnorm.ts';

/** What a forward recorder binds: the tensors' buffers and the plan's shared buffers. */
export interface ForwardEnv {
  buf(t: PTensor): GPUBuffer;
  /** The parameter buffer holding every range (paramRanges) the op reads, and the offset to subtract from them. */
  params(ranges: [number, number][]): { buf: GPUBuffer; base: number };
  /** per-(batch, group) GroupNorm statistics, and every block's noise-level embedding */
  stats: GPUBuffer;
  emb: GPUBuffer;
  /**
   * A scratch to write a conv's GroupNorm(+Swish) out into before the conv reads it (engine/unet.ts normScratchBytes);
   * absent: fused into the conv's input load.
   */
  xn?: GPUBuffer;
}

/** What a backward recorder binds: the forward's buffers, the gradients, and the shared scratch. */
export interface BackwardEnv {
  buf(t: PTensor): GPUBuffer;
  /** the gradient of a tensor (zeroed each step: every recorder adds into it) */
  grad(t: PTensor): GPUBuffer;
  /** whether a tensor is the network's input (data: no gradient wanted) */
  isInput(t: PTensor): boolean;
  params: GPUBuffer;
  grads: GPUBuffer;
  stats: GPUBuffer;
  /** the gradient of the block embeddings, laid out like ForwardEnv.emb */
  dEmb: GPUBuffer;
  /** one buffer per scratch name any op's scratchBytes gave, of the largest size asked for */
  scratch: Record<string, GPUBuffer>;
}

export type PlanOpOf<K extends PlanOp['kind']> = Extract<PlanOp, { kind: K }>;

export interface PlanOpFamily<K extends PlanOp['kind']> {
  forward(ctx: GpuContext, op: PlanOpOf<K>, env: ForwardEnv): Promise<Dispatch[]>;
  /** the op's backward, to be run in the plan's reverse order; adds into the gradients of its inputs */
  backward(ctx: GpuContext, op: PlanOpOf<K>, env: BackwardEnv): Promise<Dispatch[]>;
  /** [offset, length] of every parameter range the op reads (the ranges one binding must hold together) */
  paramRanges(op: PlanOpOf<K>): [number, number][];
  /** bytes of each named scratch buffer the backward needs (shared by all ops: the trainer allocates the largest) */
  scratchBytes(op: PlanOpOf<K>): Record<string, number>;
}

export const PLAN_OPS: { readonly [K in PlanOp['kind']]: PlanOpFamily<K> } = {
  gnstats: groupNormStatsOp,
  conv: conv2dOp,
  attention: attentionOp,
};

/** The entry of an op's kind (typed for any op: TypeScript cannot correlate `op.kind` with the table's entry). */
export function planOpFamily(op: PlanOp): PlanOpFamily<PlanOp['kind']> {
  return PLAN_OPS[op.kind] as unknown as PlanOpFamily<PlanOp['kind']>;
}
