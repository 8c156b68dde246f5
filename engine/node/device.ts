// Node edge: a GpuContext on Dawn through the `webgpu` npm package.
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GpuContext, GpuError, type GpuContextOptions } from '../gpu.ts';
import { ATTN_GEMM, MMA_OPTIONS, MMA_SUBGROUPS, mmaSupport, SPLIT_K, TILED_TILE, useConvKernel, type ConvKernel } from '../kernels.ts';
import { mmaTile, type MmaConvOptions } from '../../shaders/conv2d_mma.ts';
import { NORM_FUSION } from '../unet.ts';
import { BATCH_LOADS, TILED_PREFETCH } from '../../shaders/conv2d.ts';

/**
 * Dawn toggles asked for by default. `allow_unsafe_apis` exposes subgroup matrices (tensor cores) and
 * `vulkan_enable_f16_on_nvidia` exposes shader-f16 on NVIDIA; every path that uses them is feature-detected.
 * Override with SR3_DAWN_FLAGS (comma-separated `name=value` entries, or `none`).
 */
export const DEFAULT_DAWN_FLAGS = ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'];

export interface NodeDeviceOptions extends GpuContextOptions {
  dawnFlags?: string[];
}

let dawn: typeof import('webgpu') | null = null;

async function loadDawn(): Promise<typeof import('webgpu')> {
  if (dawn) return dawn;
  // Vulkan's loader warns on every start when XDG_RUNTIME_DIR is unset; give it a private folder.
  if (!process.env.XDG_RUNTIME_DIR) {
    const dir = join(tmpdir(), `sr3-xdg-${process.getuid?.() ?? 'user'}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    process.env.XDG_RUNTIME_DIR = dir;
  }
  try {
    dawn = await import('webgpu');
  } catch (e) {
    throw new GpuError(
      `cannot load Dawn (the \`webgpu\` npm package): ${(e as Error).message}. Run \`npm ci\` in the project folder.`,
    );
  }
  Object.assign(globalThis, dawn.globals);
  return dawn;
}

/**
 * One Dawn instance per set of toggles, for the life of the process. Each instance holds a Vulkan instance and the
 * driver's state (lavapipe's: about 2 MiB of native memory that is not returned when the instance is collected), so
 * opening and destroying devices in one process (a server, the tests) reuses it instead of growing by that much a
 * device (bench/README.md "Memory").
 */
const instances = new Map<string, GPU>();
async function dawnInstance(flags: string[]): Promise<GPU> {
  const { create } = await loadDawn();
  const key = flags.join(';');
  let gpu = instances.get(key);
  if (!gpu) {
    gpu = create(flags);
    instances.set(key, gpu);
  }
  return gpu;
}

export function dawnFlagsFromEnv(): string[] {
  const env = process.env.SR3_DAWN_FLAGS;
  if (env === undefined) return DEFAULT_DAWN_FLAGS;
  if (env.trim() === '' || env.trim() === 'none') return [];
  return env.split(';').map((s) => s.trim()).filter(Boolean);
}

/**
 * Open the best WebGPU device Dawn finds. Throws a GpuError that names the fix when there is none.
 * SR3_CONV_KERNEL (tiled, direct, f16, mma or mma3) picks the conv2d kernel; a kernel the device cannot run is an error,
 * never a silent fallback. SR3_SPLIT_K sets split-K's workgroup target (0: off); SR3_TILED_TILE=TMxTN fixes the
 * tiled kernel's tile (64 or 128 each; default: chosen per conv), SR3_MMA_TILE=TMxTN the mma kernel's;
 * SR3_TILED_PREFETCH=0 / SR3_MMA_PREFETCH=0 build the tiled / mixed-precision convs without their register
 * prefetch; SR3_ATTENTION=flash|gemm fixes the attention form (default: gemm on GPUs where the scores fit, flash
 * elsewhere); SR3_NORM=fused|materialized where GroupNorm(+Swish) is applied (default: fused on GPUs, materialized
 * on software devices); SR3_BATCH_LOADS=0 makes the GEMM convs use each loaded value as it arrives instead of
 * issuing a k-step's loads together (the default, 1); SR3_MMA_SUBGROUPS=4|8 sets a tensor-core conv workgroup's
 * subgroups (default 8); SR3_MMA_PAD=1 pads their staged tiles in workgroup memory (default 0); SR3_MMA_TK=64
 * stages 64 reduction elements a step instead of 32. See applySwitches.
 */
export async function openDevice(opts: NodeDeviceOptions = {}): Promise<GpuContext> {
  const gpu = await dawnInstance(opts.dawnFlags ?? dawnFlagsFromEnv());
  const ctx = await GpuContext.create(gpu, opts);
  if (process.env.SR3_GPU_PATHS === '1') {
    // tests only: take a software adapter through the code paths chosen for GPUs (tiled conv with split-K, GroupNorm
    // fused into the conv, several sampler steps per submission), so they are exercised where no GPU is
    (ctx.adapter as { isSoftware: boolean }).isSoftware = false;
  }
  try {
    await applySwitches(ctx);
  } catch (e) {
    ctx.destroy();
    throw e;
  }
  return ctx;
}

/**
 * The SR3_* switches of openDevice. Every value is checked (a bad one throws a GpuError naming the variable and what it
 * takes) before any engine setting changes, so a refusal leaves them all as they were.
 */
async function applySwitches(ctx: GpuContext): Promise<void> {
  const env = (name: string) => process.env[name]?.trim() || undefined;
  const bad = (name: string, value: string, what: string): never => {
    throw new GpuError(`${name}=${value}: ${what}`);
  };
  const onOff = (name: string, what: string): boolean | undefined => {
    const v = env(name);
    if (v !== undefined && v !== '0' && v !== '1') bad(name, v, `give 1 (${what}, the default) or 0`);
    return v === undefined ? undefined : v === '1';
  };
  /** A switch that takes one of `values`, else refused with `what`. */
  const oneOf = (name: string, values: string[], what: string): string | undefined => {
    const v = env(name);
    if (v !== undefined && !values.includes(v)) bad(name, v, what);
    return v;
  };
  /** A tensor-core tile (the mma kernels' options as the switches set them) checked against this device now, not at the first conv. */
  const checkMmaTile = async (name: string, value: string, tile: (S: number) => Partial<MmaConvOptions>): Promise<void> => {
    const s = await mmaSupport(ctx);
    if (!s.ok) return;
    try {
      mmaTile({ body: 'subgroup-matrix', subgroupSize: s.subgroupSize, fragment: s.fragment, subgroups: mmaSubgroups ?? MMA_SUBGROUPS, batched: batchLoads !== false, ...tile(s.fragment!) });
    } catch (e) {
      bad(name, value, `${(e as Error).message.replace(/^conv2dMmaWgsl: /, '')} on this device`);
    }
  };

  const split = env('SR3_SPLIT_K');
  const splitK = split === undefined ? undefined : Number(split);
  if (split !== undefined && (!Number.isInteger(splitK) || splitK! < 0)) bad('SR3_SPLIT_K', split, 'give a workgroup count (split-K below it), or 0 for off');
  const tile = env('SR3_TILED_TILE');
  const tiled = tile === undefined ? undefined : /^(64|128)x(64|128)$/.exec(tile);
  if (tile !== undefined && !tiled) bad('SR3_TILED_TILE', tile, "give the tiled conv kernel's tile as TMxTN, each 64 or 128 (e.g. 64x64)");
  const tiledPrefetch = onOff('SR3_TILED_PREFETCH', 'the tiled conv prefetches the next step into registers');
  const mmaPrefetch = onOff('SR3_MMA_PREFETCH', 'the mixed-precision convs prefetch the next step into registers');
  const batchLoads = onOff('SR3_BATCH_LOADS', "the GEMM convs issue a step's loads together, then normalise and store them");
  const sgEnv = oneOf('SR3_MMA_SUBGROUPS', ['4', '8'], 'give 4 or 8 (the default) subgroups a tensor-core conv workgroup');
  const mmaSubgroups = sgEnv === undefined ? undefined : (Number(sgEnv) as 4 | 8);
  const tkEnv = oneOf('SR3_MMA_TK', ['32', '64'], 'give 32 (the default) or 64 reduction elements a tensor-core k-step');
  const mmaTk = tkEnv === undefined ? undefined : (Number(tkEnv) as 32 | 64);
  const padEnv = oneOf('SR3_MMA_PAD', ['0', '1'], 'give 1 (the tensor-core convs pad their staged tiles against workgroup-memory bank conflicts) or 0 (unpadded, the default)');
  const mmaPad = padEnv === undefined ? undefined : padEnv === '1';
  if (mmaPad && batchLoads === false) bad('SR3_MMA_PAD', '1', 'the padded tiles need the batched gather: leave SR3_BATCH_LOADS unset or 1');
  const mmaTileEnv = env('SR3_MMA_TILE');
  const mmaTm = mmaTileEnv === undefined ? undefined : /^(\d+)x(\d+)$/.exec(mmaTileEnv);
  if (mmaTileEnv !== undefined) {
    if (!mmaTm) bad('SR3_MMA_TILE', mmaTileEnv, "give the mma conv kernel's tile as TMxTN (e.g. 64x64; multiples of twice the device's fragment size)");
    // the split kernel ('mma3') takes fewer fragments a subgroup
    await checkMmaTile('SR3_MMA_TILE', mmaTileEnv, () => ({ TM: Number(mmaTm![1]), TN: Number(mmaTm![2]), split: env('SR3_CONV_KERNEL') === 'mma3', maxWorkgroupBytes: ctx.limits.maxComputeWorkgroupStorageSize, pad: mmaPad, tk: mmaTk }));
  } else if (mmaTk === 64) {
    // 64-deep steps need a workgroup of at least 64 invocations (one decodes each reduction index): the smallest tile
    await checkMmaTile('SR3_MMA_TK', '64', (S) => ({ TM: 2 * S, TN: ((mmaSubgroups ?? MMA_SUBGROUPS) / 2) * S, tk: 64 }));
  }
  const norm = env('SR3_NORM');
  if (norm !== undefined && norm !== 'fused' && norm !== 'materialized') bad('SR3_NORM', norm, "give fused (GroupNorm and Swish applied in each conv's input load) or materialized (written out before the conv)");
  const attn = env('SR3_ATTENTION');
  if (attn !== undefined && attn !== 'flash' && attn !== 'gemm') bad('SR3_ATTENTION', attn, 'give flash (the online-softmax kernel) or gemm (two GEMMs through a score buffer)');
  const kernel = env('SR3_CONV_KERNEL');
  // an unknown kernel, or one this device cannot run, is refused by useConvKernel, which then selects nothing: so it
  // goes before any other setting changes
  if (kernel !== undefined) {
    try {
      await useConvKernel(ctx, kernel as ConvKernel);
    } catch (e) {
      bad('SR3_CONV_KERNEL', kernel, (e as Error).message);
    }
  }

  if (splitK !== undefined) SPLIT_K.target = splitK;
  if (tiled) {
    TILED_TILE.TM = Number(tiled[1]) as 64 | 128;
    TILED_TILE.TN = Number(tiled[2]) as 64 | 128;
  }
  if (tiledPrefetch !== undefined) TILED_PREFETCH.on = tiledPrefetch;
  if (mmaPrefetch !== undefined) MMA_OPTIONS.prefetch = mmaPrefetch;
  if (batchLoads !== undefined) BATCH_LOADS.on = batchLoads;
  if (mmaSubgroups !== undefined) MMA_OPTIONS.subgroups = mmaSubgroups;
  if (mmaPad !== undefined) MMA_OPTIONS.pad = mmaPad;
  if (mmaTk !== undefined) MMA_OPTIONS.tk = mmaTk;
  if (mmaTm) {
    MMA_OPTIONS.TM = Number(mmaTm[1]);
    MMA_OPTIONS.TN = Number(mmaTm[2]);
  }
  if (attn !== undefined) ATTN_GEMM.force = attn === 'gemm';
  if (norm !== undefined) NORM_FUSION.materialize = norm === 'materialized';
}
