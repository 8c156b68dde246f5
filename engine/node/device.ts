// Node edge: a GpuContext on Dawn through the `webgpu` npm package.
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GpuContext, GpuError, type GpuContextOptions } from '../gpu.ts';
import { checkEngineOptions } from '../ops/conv2d.ts';
import { CONV_KERNELS, type ConvKernel, type EngineSwitches } from '../options.ts';

/**
 * Dawn toggles asked for by default. `allow_unsafe_apis` exposes subgroup matrices (tensor cores) and
 * `vulkan_enable_f16_on_nvidia` exposes shader-f16 on NVIDIA; every path that uses them is feature-detected.
 * Override with SR3_DAWN_FLAGS (comma-separated `name=value` entries, or `none`).
 */
export const DEFAULT_DAWN_FLAGS: readonly string[] = Object.freeze([
  'enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia',
]);

export interface NodeDeviceOptions extends GpuContextOptions {
  dawnFlags?: string[];
}

/** Dawn's module, loaded on first use (Node caches the import itself; setting the globals again is harmless). */
async function loadDawn(): Promise<typeof import('webgpu')> {
  // Vulkan's loader warns on every start when XDG_RUNTIME_DIR is unset; give it a private folder.
  if (!process.env.XDG_RUNTIME_DIR) {
    const dir = join(tmpdir(), `sr3-xdg-${process.getuid?.() ?? 'user'}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    process.env.XDG_RUNTIME_DIR = dir;
  }
  let dawn: typeof import('webgpu');
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
  if (env === undefined) return [...DEFAULT_DAWN_FLAGS];
  if (env.trim() === '' || env.trim() === 'none') return [];
  return env
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * Open the best WebGPU device Dawn finds, with the engine's switches from the SR3_* variables (parseSwitches) under
 * any `opts.engine` given. Throws a GpuError that names the fix when there is no device, or when a switch is bad
 * or asks for something this device cannot do (never a silent fallback).
 */
export async function openDevice(opts: NodeDeviceOptions = {}): Promise<GpuContext> {
  const env = parseSwitches(process.env);
  const gpu = await dawnInstance(opts.dawnFlags ?? dawnFlagsFromEnv());
  const ctx = await GpuContext.create(gpu, { ...opts, engine: { ...env, ...opts.engine } });
  try {
    await checkEngineOptions(ctx);
  } catch (e) {
    ctx.destroy();
    const option = (e as { option?: string }).option;
    const name =
      option === 'mma.tile'
        ? 'SR3_MMA_TILE'
        : option === 'mma.tk'
          ? 'SR3_MMA_TK'
          : option === 'convKernel'
            ? 'SR3_CONV_KERNEL'
            : undefined;
    const value = name && process.env[name]?.trim();
    // a setting from opts.engine rather than the environment is named by its option
    throw new GpuError(
      value
        ? `${name}=${value}: ${(e as Error).message}${option === 'convKernel' ? '' : ' on this device'}`
        : (e as Error).message,
    );
  }
  return ctx;
}

/**
 * The engine switches of the SR3_* environment variables (README "Environment"), each value checked: a bad one throws
 * a GpuError naming the variable and what it takes. Pure: reads only `env`, needs no device (openDevice checks what
 * depends on the device).
 * - SR3_CONV_KERNEL: tiled, direct, f16, mma or mma3 (EngineOptions.convKernel);
 * - SR3_GPU_PATHS=1: the GPU code paths on any adapter (tests: a software device takes the paths chosen for GPUs);
 * - SR3_SPLIT_K: split-K's workgroup target (0: off);
 * - SR3_TILED_TILE=TMxTN, SR3_MMA_TILE=TMxTN: the tiled / mma conv kernel's tile (default: chosen per conv);
 * - SR3_TILED_PREFETCH=0, SR3_MMA_PREFETCH=0: the tiled / mixed-precision convs without their register prefetch;
 * - SR3_BATCH_LOADS=0: the GEMM convs use each loaded value as it arrives instead of issuing a step's loads together;
 * - SR3_MMA_SUBGROUPS=4|8 (default 8), SR3_MMA_PAD=1 (default 0), SR3_MMA_TK=64 (default 32): tensor-core conv
 *   workgroups' subgroups, padded staged tiles, and reduction elements a step;
 * - SR3_ATTENTION=flash|gemm: the attention form (default: gemm on the GPU paths where the scores fit, flash elsewhere);
 * - SR3_NORM=fused|materialized: where GroupNorm(+Swish) is applied (default: fused on the GPU paths, materialized on
 *   the software ones).
 */
export function parseSwitches(vars: Record<string, string | undefined>): EngineSwitches {
  const env = (name: string) => vars[name]?.trim() || undefined;
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
  const s: EngineSwitches = {};
  const mma: NonNullable<EngineSwitches['mma']> = {};

  const kernel = env('SR3_CONV_KERNEL');
  if (kernel !== undefined && !CONV_KERNELS.includes(kernel as ConvKernel)) {
    bad('SR3_CONV_KERNEL', kernel, `unknown conv2d kernel '${kernel}': use one of ${CONV_KERNELS.join(', ')}`);
  }
  if (kernel !== undefined) s.convKernel = kernel as ConvKernel;
  if (oneOf('SR3_GPU_PATHS', ['0', '1'], 'give 1 (take the code paths chosen for GPUs on any device) or 0') === '1')
    s.paths = 'gpu';
  const split = env('SR3_SPLIT_K');
  if (split !== undefined) {
    const target = Number(split);
    if (!Number.isInteger(target) || target < 0)
      bad('SR3_SPLIT_K', split, 'give a workgroup count (split-K below it), or 0 for off');
    s.splitK = { target };
  }
  const tile = env('SR3_TILED_TILE');
  if (tile !== undefined) {
    const m = /^(64|128)x(64|128)$/.exec(tile);
    if (!m) bad('SR3_TILED_TILE', tile, "give the tiled conv kernel's tile as TMxTN, each 64 or 128 (e.g. 64x64)");
    s.tiledTile = { TM: Number(m![1]) as 64 | 128, TN: Number(m![2]) as 64 | 128 };
  }
  s.tiledPrefetch = onOff('SR3_TILED_PREFETCH', 'the tiled conv prefetches the next step into registers');
  mma.prefetch = onOff('SR3_MMA_PREFETCH', 'the mixed-precision convs prefetch the next step into registers');
  s.batchLoads = onOff(
    'SR3_BATCH_LOADS',
    "the GEMM convs issue a step's loads together, then normalise and store them",
  );
  const sg = oneOf('SR3_MMA_SUBGROUPS', ['4', '8'], 'give 4 or 8 (the default) subgroups a tensor-core conv workgroup');
  if (sg !== undefined) mma.subgroups = Number(sg) as 4 | 8;
  const tk = oneOf('SR3_MMA_TK', ['32', '64'], 'give 32 (the default) or 64 reduction elements a tensor-core k-step');
  if (tk !== undefined) mma.tk = Number(tk) as 32 | 64;
  const pad = oneOf(
    'SR3_MMA_PAD',
    ['0', '1'],
    'give 1 (the tensor-core convs pad their staged tiles against workgroup-memory bank conflicts) or 0 (unpadded, the default)',
  );
  if (pad !== undefined) mma.pad = pad === '1';
  if (mma.pad && s.batchLoads === false)
    bad('SR3_MMA_PAD', '1', 'the padded tiles need the batched gather: leave SR3_BATCH_LOADS unset or 1');
  const mmaTile = env('SR3_MMA_TILE');
  if (mmaTile !== undefined) {
    const m = /^(\d+)x(\d+)$/.exec(mmaTile);
    if (!m)
      bad(
        'SR3_MMA_TILE',
        mmaTile,
        "give the mma conv kernel's tile as TMxTN (e.g. 64x64; multiples of twice the device's fragment size)",
      );
    mma.TM = Number(m![1]);
    mma.TN = Number(m![2]);
  }
  const norm = oneOf(
    'SR3_NORM',
    ['fused', 'materialized'],
    "give fused (GroupNorm and Swish applied in each conv's input load) or materialized (written out before the conv)",
  );
  if (norm !== undefined) s.norm = norm as 'fused' | 'materialized';
  const attn = oneOf(
    'SR3_ATTENTION',
    ['flash', 'gemm'],
    'give flash (the online-softmax kernel) or gemm (two GEMMs through a score buffer)',
  );
  if (attn !== undefined) s.attention = attn as 'flash' | 'gemm';
  // only what is set: an unset variable leaves the adapter's default
  for (const k of Object.keys(mma) as (keyof typeof mma)[]) if (mma[k] === undefined) delete mma[k];
  if (Object.keys(mma).length) s.mma = mma;
  for (const k of Object.keys(s) as (keyof EngineSwitches)[]) if (s[k] === undefined) delete s[k];
  return s;
}
