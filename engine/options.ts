// The engine's options: every kernel switch in one typed object, held by the device context (GpuContext.options) and
// passed down to the shader generators as arguments. Nothing here is module state: a page, a test or a benchmark
// gets a context with other options from GpuContext.withOptions. Node reads them from SR3_* variables
// (engine/node/device.ts parseSwitches); a page passes them to openBrowserDevice. Imports nothing from Node.
import type { AdapterDescription } from './gpu.ts';

/**
 * Which conv2d shader a context uses:
 * - 'tiled' (f32; 64 or 128 square-ish workgroup tiles staged through workgroup memory, for GPUs; the default there);
 * - 'direct' (f32; each invocation a block of pixels x output channels held in registers, weights staged in workgroup
 *   memory, for CPU-like software devices, where every load is a per-lane loop with bounds checks and arithmetic is
 *   nearly free; the default there);
 * - 'mma' (mixed precision: f16 operands, f32 accumulation, on tensor cores through subgroup matrices; needs
 *   'chromium-experimental-subgroup-matrix' with an f16->f32 16x16x16 (or 8x8x8) config and a fixed subgroup size);
 * - 'f16' (the same mixed precision with plain FMAs; needs 'shader-f16');
 * - 'mma3' (f32 accuracy on the tensor cores: each operand split into two f16s, three products per fragment; needs
 *   what 'mma' needs).
 * The f32 kernels, 'mma3' among them, compute the same thing to f32 rounding (the tolerances of test/conv-variants.test.ts
 * and the golden tests); the mixed ones round every operand to f16 (see shaders/conv2d_mma.ts and their own
 * tolerances). Only an explicit choice selects the tensor-core and f16 kernels.
 */
export type ConvKernel = 'tiled' | 'direct' | 'mma' | 'f16' | 'mma3';
export const CONV_KERNELS: readonly ConvKernel[] = Object.freeze(['tiled', 'direct', 'mma', 'f16', 'mma3']);

/** Every engine switch, resolved: the value each kernel reads (GpuContext.options). */
export interface EngineOptions {
  /**
   * The code paths: 'gpu' (tiled conv with split-K, GroupNorm fused into the conv, GEMM attention, split GroupNorm
   * statistics, several sampler steps per submission) or 'software' (for CPU-like devices such as lavapipe). Default:
   * from the adapter. 'gpu' on a software adapter exercises the GPU paths where no GPU is (SR3_GPU_PATHS=1, tests).
   */
  paths: 'gpu' | 'software';
  /** the conv2d shader (see ConvKernel); default 'direct' on the software paths, 'tiled' on the GPU ones */
  convKernel: ConvKernel;
  /**
   * Split-K for the GEMM conv kernels: a conv whose output tiles give fewer than `target` workgroups (the
   * low-resolution levels at batch 1 leave most of a large GPU idle: 8x8 x 512 channels is 8 workgroups) cuts its
   * reduction into chunks, run as more workgroups, and a second pass adds the partial sums and applies the epilogue.
   * GPU paths only. target 0: off; `force` sets the chunk count of every GEMM conv (tests).
   */
  splitK: { target: number; force?: number };
  /** the tiled kernel's tile (64 or 128 a side); unset: chosen per conv (engine/ops/conv2d.ts tiledShape) */
  tiledTile: { TM?: 64 | 128; TN?: 64 | 128 };
  /**
   * Register prefetch in the tiled conv (default on): the next k-step's values are loaded into registers before the
   * current step's multiply-adds, so global-memory latency overlaps the arithmetic.
   */
  tiledPrefetch: boolean;
  /**
   * The batched gather (shaders/conv2d.ts batchedIm2col, batchedWeights) in the tiled and mixed-precision GEMM
   * kernels: all of a step's loads issued before their values are used (default on; bench/README.md has the figures).
   */
  batchLoads: boolean;
  /**
   * The mixed-precision kernels: the 'mma' tile (unset: chosen per conv, engine/ops/conv2d.ts mmaShape), the register prefetch
   * of both, the subgroups of a tensor-core workgroup (default 8, see bench/README.md), padded tiles in workgroup
   * memory and 64-deep k-steps (both off until a GPU measures them; shaders/conv2d_mma.ts `pad`, `tk`).
   */
  mma: { TM?: number; TN?: number; prefetch: boolean; subgroups: 4 | 8; pad: boolean; tk: 32 | 64 };
  /**
   * The attention form: 'gemm' (two GEMMs through an HW x HW score buffer), 'flash' (the online-softmax kernel, one
   * workgroup per 16 queries), or 'auto': gemm on the GPU paths where the batch's scores take at most
   * `attentionMaxScoreBytes` (256 MiB: 64x64 maps at batch 4), flash elsewhere (its memory does not grow with HW^2).
   */
  attention: 'auto' | 'flash' | 'gemm';
  attentionMaxScoreBytes: number;
  /**
   * Where GroupNorm(+Swish) is applied: 'fused' into each conv's input load, 'materialized' (written out before the
   * conv), or 'auto': fused on the GPU paths, materialized on the software ones.
   */
  norm: 'auto' | 'fused' | 'materialized';
  /**
   * GroupNorm statistics split over several workgroups per group where (group, batch) pairs alone would give fewer
   * than `target` workgroups and a group holds at least 8192 values: GPU paths only. target 0: off; `force` sets the
   * chunk count wherever a group has enough values (tests).
   */
  gnSplit: { target: number; force?: number };
  /** the direct kernel's block, any field fixed (experiments, tests); unset: chosen per conv (ops/conv2d.ts directBlock) */
  directBlock: { PX?: number; RN?: number; CC?: number; WG?: number; vec?: boolean };
}

/** Options as a caller gives them: any subset, each group partial too. */
export type EngineSwitches = {
  [K in keyof EngineOptions]?: EngineOptions[K] extends object ? Partial<EngineOptions[K]> : EngineOptions[K];
};

/** Subgroups a tensor-core conv workgroup by default (bench/README.md has the H100 figures behind the choice). */
export const MMA_SUBGROUPS = 8;

/**
 * The options a context runs with: the defaults for this adapter, with `s` over them. Checks what can be checked
 * without a device (ops/conv2d.ts checkEngineOptions checks the rest against the device).
 */
export function resolveEngineOptions(
  adapter: Pick<AdapterDescription, 'isSoftware'>,
  s: EngineSwitches = {},
): Readonly<EngineOptions> {
  if (s.convKernel !== undefined && !CONV_KERNELS.includes(s.convKernel)) {
    throw new Error(`unknown conv2d kernel '${s.convKernel}': use one of ${CONV_KERNELS.join(', ')}`);
  }
  if (s.paths !== undefined && s.paths !== 'gpu' && s.paths !== 'software')
    throw new Error(`paths: give 'gpu' or 'software', not '${s.paths}'`);
  const paths = s.paths ?? (adapter.isSoftware ? 'software' : 'gpu');
  const o: EngineOptions = {
    paths,
    convKernel: s.convKernel ?? (paths === 'software' ? 'direct' : 'tiled'),
    splitK: { target: 256, ...s.splitK },
    tiledTile: { ...s.tiledTile },
    tiledPrefetch: s.tiledPrefetch ?? true,
    batchLoads: s.batchLoads ?? true,
    mma: { prefetch: true, subgroups: MMA_SUBGROUPS, pad: false, tk: 32, ...s.mma },
    attention: s.attention ?? 'auto',
    attentionMaxScoreBytes: s.attentionMaxScoreBytes ?? 256 * 2 ** 20,
    norm: s.norm ?? 'auto',
    gnSplit: { target: 256, ...s.gnSplit },
    directBlock: { ...s.directBlock },
  };
  if (o.mma.pad && !o.batchLoads) throw new Error('mma.pad: the padded tiles need the batched gather (batchLoads)');
  return deepFreeze(o);
}

/** Whether GroupNorm(+Swish) is written out before the conv rather than applied in its input load. */
export function materializeNorm(o: EngineOptions): boolean {
  return o.norm === 'auto' ? o.paths === 'software' : o.norm === 'materialized';
}

function deepFreeze<T extends object>(o: T): Readonly<T> {
  for (const v of Object.values(o)) if (v && typeof v === 'object') Object.freeze(v);
  return Object.freeze(o);
}
