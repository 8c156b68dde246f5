/// <reference types="@webgpu/types" preserve="true" />
// The browser-facing public API: a device in (navigator.gpu), a model (from a URL, a File/Blob or an ArrayBuffer), an
// upscale call with progress and cancellation (AbortSignal), an image out (PixelImage / ImageData). Images come from
// createImageBitmap and a canvas instead of pngjs; everything after that is the shared core, as in Node
// (engine/node/upscale.ts). Imports nothing from Node: scripts/build-web.mjs bundles this file for a page.
import {
  convertCheckpointAsync,
  loadModel,
  sniffFormat,
  webInflateRaw,
  type SR3Model,
} from '../weights-format/index.ts';
import { GpuContext, GpuError, type GpuContextOptions } from './gpu.ts';
import type { EngineSwitches } from './options.ts';
import { imageToTensors, tensorsToImage, type PixelImage } from './image.ts';
import { checkEngineOptions } from './ops/conv2d.ts';
import { SAMPLERS } from './sampler.ts';
import {
  bicubicUpscale,
  conditionRecipe,
  DEFAULT_SAMPLER,
  DEFAULT_STEPS,
  defaultSchedule,
  paddedSize,
  upscaleTensor,
  type UpscaleOptions,
} from './upscale.ts';
import {
  toPixelImage,
  upscalerOn,
  type PixelsIn,
  type UpscaleCallOptions,
  type UpscalerCoreOptions,
  type UpscaleResult,
  type Upscaler,
} from './upscaler.ts';

export { GpuContext, GpuError, type GpuContextOptions } from './gpu.ts';
export { CONV_KERNELS, type ConvKernel, type EngineOptions, type EngineSwitches } from './options.ts';
export { imageToTensors, tensorsToImage, type PixelImage } from './image.ts';
export { SAMPLERS, type SamplerKind } from './sampler.ts';
export {
  bicubicUpscale,
  conditionRecipe,
  DEFAULT_SAMPLER,
  DEFAULT_STEPS,
  defaultSchedule,
  upscaleTensor,
  type Tensor3,
  type UpscaleOptions,
} from './upscale.ts';
export { describeModel, loadModel, type SR3Model } from '../weights-format/index.ts';
export {
  createUpscalerCore,
  toPixelImage,
  type PixelsIn,
  type SamplingOptions,
  type UpscaleCallOptions,
  type UpscaleResult,
  type Upscaler,
  type UpscalerCoreOptions,
} from './upscaler.ts';

/** WebGPU is missing (no navigator.gpu: an old browser, an insecure origin, or WebGPU turned off) or gives no adapter. */
export class WebGpuUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebGpuUnavailableError';
  }
}

/** The image is too large for this device (or for the caller's pixel limit). */
export class ImageTooLargeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageTooLargeError';
  }
}

const NO_WEBGPU =
  'WebGPU is not available in this browser. Use a recent Chrome, Edge or another browser with WebGPU turned on ' +
  '(Firefox and Safari: check that WebGPU is enabled), and open the page over https:// or from localhost.';

const NO_ADAPTER =
  'WebGPU is present but this browser gave no GPU adapter (WebGPU may be blocked for this GPU or driver, or turned ' +
  'off). Check chrome://gpu, update the GPU driver, or try another browser.';

function defaultGpu(): GPU | undefined {
  return (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
}

/** Whether a WebGPU adapter can be had here, and if not, a message that says why (for a page to show). */
export async function webGpuStatus(
  gpu: GPU | undefined = defaultGpu(),
): Promise<{ ok: true; adapter: GPUAdapter } | { ok: false; reason: string }> {
  if (!gpu || typeof gpu.requestAdapter !== 'function') return { ok: false, reason: NO_WEBGPU };
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    return { ok: false, reason: `${NO_ADAPTER} (${(e as Error).message})` };
  }
  if (!adapter) return { ok: false, reason: NO_ADAPTER };
  return { ok: true, adapter };
}

/**
 * Open the engine's device on `gpu` (default: navigator.gpu), with the engine's options in `opts.engine` (the same
 * EngineSwitches that Node reads from SR3_* variables; defaults from the adapter). Throws WebGpuUnavailableError with
 * a message fit to show a user when WebGPU is missing or gives no adapter, and an Error naming the option when one
 * asks for what this device cannot do.
 */
export async function openBrowserDevice(
  gpu: GPU | undefined = defaultGpu(),
  opts: GpuContextOptions = {},
): Promise<GpuContext> {
  const st = await webGpuStatus(gpu);
  if (!st.ok) throw new WebGpuUnavailableError(st.reason);
  let ctx: GpuContext;
  try {
    ctx = await GpuContext.create(gpu!, opts);
  } catch (e) {
    if (e instanceof GpuError && /adapter/i.test(e.message)) throw new WebGpuUnavailableError(NO_ADAPTER);
    throw e;
  }
  try {
    await checkEngineOptions(ctx);
  } catch (e) {
    ctx.destroy();
    throw new Error(`engine option ${(e as { option?: string }).option}: ${(e as Error).message}`);
  }
  return ctx;
}

export type ModelSource = string | URL | Blob | ArrayBuffer | ArrayBufferView;

export interface LoadModelOptions {
  /** bytes loaded so far and the total (0 when the server does not say) */
  onProgress?: (loaded: number, total: number) => void;
  signal?: AbortSignal;
  /** For a reference checkpoint (.pth): the reference's JSON options text (its config.json). */
  optionsText?: string;
  /** Notes about the conversion of a .pth (default: console.warn). */
  log?: (msg: string) => void;
}

/** The bytes of a model from a URL (fetched, with progress), a File/Blob, an ArrayBuffer or a typed array. */
export async function fetchBytes(src: ModelSource, opts: LoadModelOptions = {}): Promise<Uint8Array> {
  opts.signal?.throwIfAborted();
  if (src instanceof ArrayBuffer) return new Uint8Array(src);
  if (ArrayBuffer.isView(src)) return new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
  if (typeof Blob !== 'undefined' && src instanceof Blob) {
    const b = new Uint8Array(await src.arrayBuffer());
    opts.onProgress?.(b.byteLength, b.byteLength);
    return b;
  }
  const url = String(src);
  let res: Response;
  try {
    res = await fetch(url, { signal: opts.signal });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new Error(`cannot fetch the model ${url}: ${(e as Error).message}`);
  }
  if (!res.ok) throw new Error(`cannot fetch the model ${url}: HTTP ${res.status} ${res.statusText}`);
  const total = Number(res.headers.get('content-length') ?? 0) || 0;
  if (!res.body) {
    const b = new Uint8Array(await res.arrayBuffer());
    opts.onProgress?.(b.byteLength, b.byteLength);
    return b;
  }
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    opts.onProgress?.(loaded, total);
  }
  const out = new Uint8Array(loaded);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.byteLength;
  }
  return out;
}

/**
 * A model from a URL, a File/Blob or an ArrayBuffer: our model file (.safetensors written by `sr3 convert`), or a
 * reference checkpoint (.pth, converted in memory; pass its config.json text as `optionsText` when it is not a default).
 */
export async function loadModelFrom(src: ModelSource, opts: LoadModelOptions = {}): Promise<SR3Model> {
  const bytes = await fetchBytes(src, opts);
  const name =
    typeof src === 'string' || src instanceof URL
      ? String(src)
      : typeof File !== 'undefined' && src instanceof File
        ? src.name
        : 'model';
  try {
    if (sniffFormat(bytes) === 'pth') {
      const r = await convertCheckpointAsync(bytes, { optionsText: opts.optionsText, inflate: webInflateRaw });
      for (const w of r.warnings) (opts.log ?? console.warn)(`warning: ${w}`);
      return r.model;
    }
    return loadModel(bytes);
  } catch (e) {
    throw new Error(`${name}: ${(e as Error).message}`);
  }
}

/** Sources createImageBitmap takes (a File from an <input> or a drop, an <img>, a canvas, a Blob...). */
export type ImageSource = ImageBitmapSource;

/** ImageData (RGBA, 8 bits) -> PixelImage; an image whose alpha is all opaque becomes RGB (no alpha to upscale). */
export function imageDataToPixelImage(
  img: { width: number; height: number; data: Uint8ClampedArray | Uint8Array },
  keepAlpha = 'auto' as boolean | 'auto',
): PixelImage {
  const { width, height } = img;
  const src = img.data;
  let alpha = keepAlpha === true;
  if (keepAlpha === 'auto') {
    for (let i = 3; i < src.length; i += 4) {
      if (src[i] !== 255) {
        alpha = true;
        break;
      }
    }
  }
  if (alpha)
    return {
      width,
      height,
      channels: 4,
      bitDepth: 8,
      data: new Uint8Array(src.buffer.slice(src.byteOffset, src.byteOffset + src.byteLength)),
    };
  const data = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    data[p * 3] = src[p * 4];
    data[p * 3 + 1] = src[p * 4 + 1];
    data[p * 3 + 2] = src[p * 4 + 2];
  }
  return { width, height, channels: 3, bitDepth: 8, data };
}

/** PixelImage (any channel count, 8 or 16 bits) -> RGBA 8-bit pixels, ready for `new ImageData(...)`. */
export function pixelImageToRgba(img: PixelImage): Uint8ClampedArray<ArrayBuffer> {
  const n = img.width * img.height;
  const out = new Uint8ClampedArray(n * 4);
  const shift = img.bitDepth === 16 ? 257 : 1;
  const v = (i: number) => Math.round(img.data[i] / shift);
  for (let p = 0; p < n; p++) {
    const b = p * img.channels;
    const o = p * 4;
    switch (img.channels) {
      case 1:
        out[o] = out[o + 1] = out[o + 2] = v(b);
        out[o + 3] = 255;
        break;
      case 2:
        out[o] = out[o + 1] = out[o + 2] = v(b);
        out[o + 3] = v(b + 1);
        break;
      case 3:
        out[o] = v(b);
        out[o + 1] = v(b + 1);
        out[o + 2] = v(b + 2);
        out[o + 3] = 255;
        break;
      case 4:
        out[o] = v(b);
        out[o + 1] = v(b + 1);
        out[o + 2] = v(b + 2);
        out[o + 3] = v(b + 3);
        break;
    }
  }
  return out;
}

/** PixelImage -> ImageData (for putImageData on a canvas). */
export function toImageData(img: PixelImage): ImageData {
  return new ImageData(pixelImageToRgba(img), img.width, img.height);
}

/**
 * Decode an image in the page: createImageBitmap (no colour-space conversion, no premultiplication) drawn on a canvas
 * and read back. Returns RGB when the image is opaque, RGBA otherwise.
 */
export async function decodeImage(src: ImageSource): Promise<PixelImage> {
  let bmp: ImageBitmap;
  try {
    bmp = await createImageBitmap(src, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch (e) {
    throw new Error(`cannot decode the image (${(e as Error).message}); use a PNG, JPEG, WebP or GIF file`);
  }
  try {
    const { width, height } = bmp;
    if (!width || !height) throw new Error('the image is empty (0x0)');
    const canvas =
      typeof OffscreenCanvas !== 'undefined'
        ? new OffscreenCanvas(width, height)
        : Object.assign(document.createElement('canvas'), { width, height });
    const g = canvas.getContext('2d', { willReadFrequently: true }) as
      | CanvasRenderingContext2D
      | OffscreenCanvasRenderingContext2D
      | null;
    if (!g) throw new Error('no 2D canvas context to decode the image');
    g.drawImage(bmp, 0, 0);
    return imageDataToPixelImage(g.getImageData(0, 0, width, height));
  } finally {
    bmp.close();
  }
}

/** Default cap on input pixels for upscaleImage (256x256 in, 1024x1024 out for a 4x model). */
export const DEFAULT_MAX_INPUT_PIXELS = 256 * 256;

/**
 * Refuse, before any GPU work, an image that is too large: more than `maxPixels` input pixels, or a size whose largest
 * GPU buffer (an estimate: the U-Net's widest full-resolution activation) exceeds the device's buffer limits.
 */
export function checkImageSize(
  ctx: GpuContext | null,
  model: SR3Model,
  width: number,
  height: number,
  opts: { maxPixels?: number; samples?: number } = {},
): void {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  const { scale } = conditionRecipe(model);
  if (width < 1 || height < 1) throw new ImageTooLargeError(`the image is empty (${width}x${height})`);
  if (width * height > maxPixels) {
    const side = Math.floor(Math.sqrt(maxPixels));
    throw new ImageTooLargeError(
      `the image is too large: ${width}x${height} (${width * height} pixels); the limit is ${maxPixels} pixels ` +
        `(about ${side}x${side}), which makes ${side * scale}x${side * scale}. Crop or shrink it first.`,
    );
  }
  if (!ctx) return;
  const [Hp, Wp] = paddedSize(model, height * scale, width * scale, scale);
  const cfg = model.config;
  const widest = 2 * cfg.inner_channel * Math.max(...cfg.channel_mults.slice(0, 1), 1);
  const bytes = (opts.samples ?? 1) * widest * Hp * Wp * 4;
  const limit = Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize);
  if (bytes > limit) {
    throw new ImageTooLargeError(
      `the image is too large for this GPU: ${width}x${height} -> ${width * scale}x${height * scale} needs GPU buffers of ` +
        `${(bytes / 2 ** 20).toFixed(0)} MiB, the device allows ${(limit / 2 ** 20).toFixed(0)} MiB. Crop or shrink it first.`,
    );
  }
}

export interface UpscaleImageOptions extends UpscaleOptions {
  /** Refuse larger inputs (default DEFAULT_MAX_INPUT_PIXELS). */
  maxPixels?: number;
}

export interface UpscaleImageResult {
  /** the SR3 output(s), same colour type as the input (alpha bicubic-upscaled) */
  images: PixelImage[];
  /** the model's scale factor */
  scale: number;
  seconds: number;
}

/**
 * Upscale a picture with an SR3 model: the same path as `sr3 upscale` in Node (imageToTensors -> upscaleTensor ->
 * tensorsToImage, alpha by bicubic). `opts.onProgress(done, total)` reports sampler steps; `opts.signal` cancels
 * between steps (the promise rejects with the signal's reason).
 */
export async function upscaleImage(
  ctx: GpuContext,
  model: SR3Model,
  img: PixelImage,
  opts: UpscaleImageOptions = {},
): Promise<UpscaleImageResult> {
  checkImageSize(ctx, model, img.width, img.height, { maxPixels: opts.maxPixels, samples: opts.samples });
  if (opts.sampler && !SAMPLERS.includes(opts.sampler))
    throw new Error(`sampler must be one of ${SAMPLERS.join(', ')}, got '${opts.sampler}'`);
  opts.signal?.throwIfAborted();
  const t0 = performance.now();
  const { scale, up } = conditionRecipe(model);
  const { color, alpha } = imageToTensors(img, model.config.out_channel);
  const outs = await upscaleTensor(ctx, model, color, {
    ...opts,
    schedule: opts.schedule ?? defaultSchedule(opts.steps ?? DEFAULT_STEPS, opts.sampler ?? DEFAULT_SAMPLER),
  });
  const alphaUp = alpha ? await bicubicUpscale(ctx, alpha, scale, up, true) : null;
  return {
    images: outs.map((o) => tensorsToImage(o, alphaUp, img)),
    scale,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** Plain bicubic upscaling with the model's condition kernel (the baseline shown next to SR3). */
export async function bicubicImage(ctx: GpuContext, model: SR3Model, img: PixelImage): Promise<PixelImage> {
  const { scale, up } = conditionRecipe(model);
  const { color, alpha } = imageToTensors(img, model.config.out_channel);
  const c = await bicubicUpscale(ctx, color, scale, up, true);
  const a = alpha ? await bicubicUpscale(ctx, alpha, scale, up, true) : null;
  return tensorsToImage(c, a, img);
}

/** Encode a PixelImage as a PNG Blob through a canvas (8-bit RGBA). */
export async function encodePng(img: PixelImage): Promise<Blob> {
  const data = toImageData(img);
  if (typeof OffscreenCanvas !== 'undefined') {
    const c = new OffscreenCanvas(img.width, img.height);
    c.getContext('2d')!.putImageData(data, 0, 0);
    return c.convertToBlob({ type: 'image/png' });
  }
  const c = Object.assign(document.createElement('canvas'), { width: img.width, height: img.height });
  c.getContext('2d')!.putImageData(data, 0, 0);
  return new Promise((resolve, reject) =>
    c.toBlob((b) => (b ? resolve(b) : reject(new Error('PNG encoding failed'))), 'image/png'),
  );
}

export interface BrowserUpscalerOptions extends UpscalerCoreOptions {
  /** The model: a URL (fetched), a File/Blob, bytes, or an SR3Model already loaded. */
  model: ModelSource | SR3Model;
  /** An open GpuContext (kept open by dispose()), or the WebGPU entry point (default navigator.gpu; closed by dispose()). */
  device?: GpuContext | GPU;
  /** The engine's options for a device opened here (as openBrowserDevice's `engine`; an open GpuContext has its own). */
  engine?: EngineSwitches;
  /** Refuse inputs over this many pixels (default DEFAULT_MAX_INPUT_PIXELS); Infinity turns the check off. */
  maxPixels?: number;
  /** Model download progress and cancellation. */
  load?: LoadModelOptions;
}

export interface BrowserUpscaler extends Omit<Upscaler, 'upscale'> {
  /** Upscale pixels ({ width, height, channels, data }, or ImageData) or anything createImageBitmap takes. */
  upscale(
    input: PixelsIn | ImageData | ImageSource,
    opts?: UpscaleCallOptions,
  ): Promise<UpscaleResult & { toImageData(index?: number): ImageData }>;
}

function isSR3Model(m: unknown): m is SR3Model {
  return !!m && typeof m === 'object' && 'config' in m && typeof (m as SR3Model).param === 'function';
}

/**
 * An upscaler for a page, built once and reused: the device opened (or given), the model loaded and its weights
 * uploaded once, each image size's sampler kept for the next image.
 *
 *   const up = await createUpscaler({ model: '/models/natural4x.safetensors', steps: 20 });
 *   const out = await up.upscale(fileInput.files[0], { seed: 1, onProgress, signal });
 *   canvas.getContext('2d').putImageData(out.toImageData(), 0, 0);
 *   up.dispose();
 */
export async function createUpscaler(opts: BrowserUpscalerOptions): Promise<BrowserUpscaler> {
  const model = isSR3Model(opts.model) ? opts.model : await loadModelFrom(opts.model, opts.load);
  const core = await upscalerOn(
    model,
    opts.device instanceof GpuContext ? opts.device : undefined,
    () => openBrowserDevice(opts.device as GPU | undefined, { engine: opts.engine }),
    opts,
  );
  const device = core.device;
  return {
    model: core.model,
    device: core.device,
    scale: core.scale,
    upscaleTensor: core.upscaleTensor,
    dispose: core.dispose,
    upscale: async (input, o = {}) => {
      let px: PixelsIn;
      if (typeof ImageData !== 'undefined' && input instanceof ImageData) px = imageDataToPixelImage(input);
      else if (input && typeof input === 'object' && 'data' in input && 'channels' in input) px = input as PixelsIn;
      else px = await decodeImage(input as ImageSource);
      const img = toPixelImage(px);
      checkImageSize(device, model, img.width, img.height, {
        maxPixels: opts.maxPixels,
        samples: o.samples ?? opts.samples,
      });
      const r = await core.upscale(img, o);
      return { ...r, toImageData: (i = 0) => toImageData(r.images[i]) };
    },
  };
}
