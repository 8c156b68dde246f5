// An upscaler you build once and reuse (browser-safe core): one device, one model whose parameters are uploaded once,
// and the samplers of the last image shapes kept built, so the second image of a folder starts sampling at once.
// The Node edge (engine/node/api.ts) and the page (engine/browser.ts) wrap it with their own model, device and image
// sources; this file takes a GpuContext, an SR3Model and pixels.
import type { SR3Model } from '../weights-format/index.ts';
import type { GpuContext } from './gpu.ts';
import { imageToTensors, tensorsToImage, type PixelImage } from './image.ts';
import { SAMPLERS, type SamplerKind } from './sampler.ts';
import { MAX_STEPS } from './schedule.ts';
import { UpscaleCache } from './upscale-cache.ts';
import {
  bicubicUpscale,
  conditionRecipe,
  DEFAULT_SAMPLER,
  DEFAULT_STEPS,
  defaultSchedule,
  upscaleTensor,
  type Tensor3,
} from './upscale.ts';
import type { Seed } from './rng.ts';

/** Sampling settings: given to createUpscaler as defaults, and per image to override them. */
export interface SamplingOptions {
  /** Sampling steps (default DEFAULT_STEPS); ignored when `schedule` is given. */
  steps?: number;
  /** A schedule `kind:steps:start:end` (default: defaultSchedule(steps)). */
  schedule?: string;
  /** The sampler (default DEFAULT_SAMPLER). */
  sampler?: SamplerKind;
  /** DDIM's eta (default 0). */
  eta?: number;
  /** Several samples of each image, run as one batch (default 1); they come back in `images`. */
  samples?: number;
  /** Keep the input's low frequencies at every step (default true). */
  consistency?: boolean;
  /** Work on overlapping tiles of at most tile x tile output pixels (default: chosen for the device and the model, see UpscaleOptions.tile). */
  tile?: number;
  /** Overlap between tiles in output pixels (default a quarter of the tile). */
  overlap?: number;
}

export interface UpscalerCoreOptions extends SamplingOptions {
  /**
   * How many image shapes keep their sampler built (default 1: a folder of one size, or tiles of one size, builds it
   * once; each kept shape holds its U-Net's activations, hundreds of MiB for a large image). 0 builds every image's anew.
   */
  cacheShapes?: number;
  /** Destroy the device with the upscaler (default false: the caller's device stays open). */
  ownsDevice?: boolean;
}

export interface UpscaleCallOptions extends SamplingOptions {
  /** Random seed (default 0): the same seed and settings give the same image. */
  seed?: Seed;
  /** Cancels between steps; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Sampler steps done and their total, after every step. */
  onProgress?: (done: number, total: number) => void;
  /** On a tiled image: tile passes done and their total (tiles x steps), after every tile of every step. */
  onTile?: (done: number, total: number) => void;
  /** Before the first step of a new image shape: shaders compiled and their total (see UpscaleOptions.onPrepare). */
  onPrepare?: (done: number, total: number) => void;
}

export interface UpscaleResult {
  /** The (first) output: scale x the input's size, the input's colour type and bit depth (alpha bicubic-upscaled). */
  image: PixelImage;
  /** Every sample (`samples` of them; images[0] is `image`). */
  images: PixelImage[];
  /** The model's scale factor. */
  scale: number;
  /** Seconds this image took. */
  seconds: number;
}

export interface Upscaler {
  readonly model: SR3Model;
  readonly device: GpuContext;
  /** The model's scale factor (4 for the bundled model). */
  readonly scale: number;
  /** Upscale one picture. Calls made at once run one after another. */
  upscale(img: PixelsIn, opts?: UpscaleCallOptions): Promise<UpscaleResult>;
  /** Upscale a float tensor (channels-first, [-1, 1]); the building block for custom pipelines. */
  upscaleTensor(lr: Tensor3, opts?: UpscaleCallOptions): Promise<Tensor3[]>;
  /** Free the model's buffers and built samplers (and the device, when the upscaler opened it). */
  dispose(): void;
}

/** The most samples of one image in one call (they run as one batch). */
export const MAX_SAMPLES = 64;
/** The largest tile: 16384, the widest PNG the Node edge writes (a tile this size covers any output in one pass). */
export const MAX_TILE = 16384;

/** Check sampling options before any work, with messages that name the option and what it takes. */
export function checkSamplingOptions(o: SamplingOptions): void {
  // the same ranges as sr3 upscale's flags (engine/node/upscale-args.ts)
  const int = (v: number | undefined, name: string, min: number, max: number) => {
    if (v !== undefined && (!Number.isInteger(v) || v < min || v > max))
      throw new Error(`${name} must be an integer from ${min} to ${max}, got ${v}`);
  };
  int(o.steps, 'steps', 2, MAX_STEPS);
  int(o.samples, 'samples', 1, MAX_SAMPLES);
  int(o.tile, 'tile', 8, MAX_TILE);
  int(o.overlap, 'overlap', 0, MAX_TILE - 1);
  if (o.sampler !== undefined && !SAMPLERS.includes(o.sampler))
    throw new Error(`sampler must be one of ${SAMPLERS.join(', ')}, got '${o.sampler}'`);
  if (o.eta !== undefined && !(Number.isFinite(o.eta) && o.eta >= 0 && o.eta <= 1))
    throw new Error(`eta must be a number from 0 (deterministic) to 1 (DDPM-like), got ${o.eta}`);
  if (o.schedule !== undefined && typeof o.schedule !== 'string')
    throw new Error(`schedule must be a string kind:steps:start:end, got ${typeof o.schedule}`);
}

/**
 * The core upscaler on the caller's device (left open) or on one that `open` makes (destroyed with the upscaler, or at
 * once if the build fails): the step the Node and the browser createUpscaler share.
 */
export async function upscalerOn(
  model: SR3Model,
  given: GpuContext | undefined,
  open: () => Promise<GpuContext>,
  opts: UpscalerCoreOptions,
): Promise<Upscaler> {
  const device = given ?? (await open());
  try {
    return createUpscalerCore(device, model, { ...opts, ownsDevice: opts.ownsDevice ?? !given });
  } catch (e) {
    if (!given) device.destroy();
    throw e;
  }
}

/** An upscaler on `device` with `model` (both already open): the shared core of the Node and browser createUpscaler. */
export function createUpscalerCore(device: GpuContext, model: SR3Model, defaults: UpscalerCoreOptions = {}): Upscaler {
  checkSamplingOptions(defaults);
  const C = model.config.out_channel;
  const { scale, up } = conditionRecipe(model);
  const cache = new UpscaleCache(device, model, defaults.cacheShapes ?? 1);
  let disposed = false;
  // one image at a time: the cached samplers' buffers are reused by the next image
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(f: () => Promise<T>): Promise<T> => {
    const run = queue.then(f, f);
    queue = run.catch(() => {});
    return run;
  };
  const settings = (opts: UpscaleCallOptions) => {
    if (disposed) throw new Error('this upscaler was disposed; create a new one');
    checkSamplingOptions(opts);
    const o = { ...defaults, ...withoutUndefined(opts) };
    const schedule =
      opts.schedule ??
      (opts.steps !== undefined ? undefined : defaults.schedule) ??
      defaultSchedule(o.steps ?? DEFAULT_STEPS, o.sampler ?? DEFAULT_SAMPLER);
    return {
      schedule,
      sampler: o.sampler,
      eta: o.eta,
      samples: o.samples,
      consistency: o.consistency,
      tile: o.tile,
      overlap: o.overlap,
      seed: opts.seed,
      signal: opts.signal,
      onProgress: opts.onProgress,
      onTile: opts.onTile,
      onPrepare: opts.onPrepare,
      cache,
    };
  };
  const upscaler: Upscaler = {
    model,
    device,
    scale,
    upscaleTensor: (lr, opts = {}) => {
      const s = settings(opts);
      return serial(() => upscaleTensor(device, model, lr, s));
    },
    upscale: (input, opts = {}) => {
      const s = settings(opts);
      const img = toPixelImage(input);
      return serial(async () => {
        s.signal?.throwIfAborted();
        const t0 = performance.now();
        const { color, alpha } = imageToTensors(img, C);
        const outs = await upscaleTensor(device, model, color, s);
        const alphaUp = alpha ? await bicubicUpscale(device, alpha, scale, up, true) : null;
        const images = outs.map((o) => tensorsToImage(o, alphaUp, img));
        return { image: images[0], images, scale, seconds: (performance.now() - t0) / 1000 };
      });
    },
    dispose: () => {
      if (disposed) return;
      disposed = true;
      cache.destroy();
      if (defaults.ownsDevice) device.destroy();
    },
  };
  return upscaler;
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Pixels in: interleaved samples; bitDepth defaults to 16 for a Uint16Array and 8 otherwise. */
export interface PixelsIn {
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
  bitDepth?: 8 | 16;
  data: Uint8Array | Uint8ClampedArray | Uint16Array;
}

/** Pixels as the engine takes them (a PixelImage), or an error that names the fix when a field is wrong or the data is short. */
export function toPixelImage(img: PixelsIn): PixelImage {
  if (!img || typeof img !== 'object') throw new Error('the input must be pixels { width, height, channels, data }');
  const { width, height, channels, data } = img;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw new Error(`the image's width and height must be positive integers, got ${width}x${height}`);
  if (![1, 2, 3, 4].includes(channels))
    throw new Error(`channels must be 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA), got ${channels}`);
  const bitDepth = img.bitDepth ?? (data instanceof Uint16Array ? 16 : 8);
  if (bitDepth !== 8 && bitDepth !== 16) throw new Error(`bitDepth must be 8 or 16, got ${bitDepth}`);
  if (!(data instanceof Uint8Array || data instanceof Uint8ClampedArray || data instanceof Uint16Array))
    throw new Error('data must be a Uint8Array (8-bit) or Uint16Array (16-bit) of interleaved samples');
  if (data.length !== width * height * channels)
    throw new Error(
      `data has ${data.length} samples; ${width}x${height}x${channels} needs ${width * height * channels}`,
    );
  if (bitDepth === 16 && !(data instanceof Uint16Array)) throw new Error('16-bit pixels need a Uint16Array');
  const d = data instanceof Uint8ClampedArray ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : data;
  return { width, height, channels, bitDepth, data: d };
}
