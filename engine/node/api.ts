// The Node API of `createUpscaler`: the browser-safe core (engine/upscaler.ts) with Node's sources. The model is a
// path, bytes or an SR3Model (default: the bundled 4x model); the device is opened here (or an open GpuContext is
// used); an input is a path, PNG or JPEG bytes, or pixels; an output is pixels with a png() to encode it.
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openModelBytes, type SR3Model } from '../../weights-format/index.ts';
import { nodeInflateRaw } from '../../weights-format/node.ts';
import { GpuContext } from '../gpu.ts';
import type { PixelImage } from '../image.ts';
import {
  upscalerOn,
  type PixelsIn,
  type UpscaleCallOptions,
  type UpscalerCoreOptions,
  type UpscaleResult,
  type Upscaler,
} from '../upscaler.ts';
import { openDevice, type NodeDeviceOptions } from './device.ts';
import { decodeImage, readImage } from './image-io.ts';
import { openModel } from './model.ts';
import { encodePng } from './png.ts';

/**
 * The bundled model's path. Found by walking up from this file, so it is the same from the sources
 * (engine/node/api.ts) and from the compiled package (dist/engine/node/api.js).
 */
export function bundledModelPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const f = join(dir, 'models', 'natural4x.safetensors');
    if (existsSync(f)) return f;
    dir = dirname(dir);
  }
  // the path the sources expect, for the error message
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'models', 'natural4x.safetensors');
}

export type ModelInput = string | URL | Uint8Array | ArrayBuffer | SR3Model;
export type ImageInput = string | URL | Uint8Array | ArrayBuffer | PixelsIn;

export interface UpscalerOptions extends UpscalerCoreOptions {
  /** A model file (.safetensors from `sr3 convert`, or a reference .pth), its bytes, or a loaded SR3Model (default: the bundled 4x model). */
  model?: ModelInput;
  /** For a reference .pth: the path of its JSON options file. */
  config?: string;
  /** An open device (kept open by dispose()), or options to open one (closed by dispose()). */
  device?: GpuContext | NodeDeviceOptions;
  /** Where notes about a converted .pth go (default stderr). */
  log?: (msg: string) => void;
}

export interface NodeUpscaleResult extends UpscaleResult {
  /** PNG bytes of `images[index]` (default the first). */
  png(index?: number): Buffer;
  /** Write `images[index]` as a PNG file. */
  save(file: string, index?: number): Promise<void>;
}

export interface NodeUpscaler extends Omit<Upscaler, 'upscale'> {
  /** Upscale a PNG or JPEG file (path), PNG or JPEG bytes, or pixels { width, height, channels, data }. */
  upscale(input: ImageInput, opts?: UpscaleCallOptions): Promise<NodeUpscaleResult>;
}

/** Load a model from a path, bytes or a loaded SR3Model. */
export async function loadModelFrom(
  src: ModelInput = bundledModelPath(),
  opts: { config?: string; log?: (m: string) => void } = {},
): Promise<SR3Model> {
  if (typeof src === 'string' || src instanceof URL) {
    const file = src instanceof URL ? fileURLToPath(src) : src;
    if (!existsSync(file)) {
      throw new Error(
        file === bundledModelPath()
          ? `the bundled model ${file} is missing: reinstall sr3-wgsl, or pass a model`
          : `${file}: no such model file`,
      );
    }
    return openModel(file, { config: opts.config, log: opts.log });
  }
  if (src instanceof Uint8Array || src instanceof ArrayBuffer) {
    const bytes = src instanceof ArrayBuffer ? new Uint8Array(src) : src;
    // the one model-opening path (sr3 upscale, info and convert take it too): the same checks and messages
    const optionsText = opts.config ? readFileSync(opts.config, 'utf8') : undefined;
    const r = openModelBytes(bytes, { optionsText, inflate: nodeInflateRaw });
    for (const w of r.warnings) (opts.log ?? ((m) => console.error(m)))(`warning: ${w}`);
    return r.model;
  }
  if (src && typeof src === 'object' && 'config' in src && typeof (src as SR3Model).param === 'function') return src;
  throw new Error('model must be a file path, the bytes of a model file, or a loaded SR3Model');
}

/** Pixels from a path, PNG or JPEG bytes, or pixels (checked by the core). */
export async function readInput(input: ImageInput): Promise<PixelsIn> {
  if (typeof input === 'string' || input instanceof URL)
    return readImage(input instanceof URL ? fileURLToPath(input) : input);
  if (input instanceof Uint8Array) return decodeImage(input, 'input bytes');
  if (input instanceof ArrayBuffer) return decodeImage(new Uint8Array(input), 'input bytes');
  return input;
}

/** PNG bytes of pixels (8 or 16 bits, 1-4 channels). */
export function toPng(img: PixelImage): Buffer {
  return encodePng(img);
}

/**
 * An upscaler to reuse: the device is opened, the model loaded and its weights uploaded once; each image's sampler
 * is kept for the next image of the same size. Call dispose() when done.
 *
 *   const up = await createUpscaler({ steps: 20 });
 *   const out = await up.upscale('photo.png', { seed: 1 });
 *   await out.save('photo_4x.png');
 *   up.dispose();
 */
export async function createUpscaler(opts: UpscalerOptions = {}): Promise<NodeUpscaler> {
  const model = await loadModelFrom(opts.model, { config: opts.config, log: opts.log });
  const core = await upscalerOn(
    model,
    opts.device instanceof GpuContext ? opts.device : undefined,
    () => openDevice((opts.device as NodeDeviceOptions | undefined) ?? {}),
    opts,
  );
  return {
    model: core.model,
    device: core.device,
    scale: core.scale,
    upscaleTensor: core.upscaleTensor,
    dispose: core.dispose,
    upscale: async (input, o) => {
      const r = await core.upscale(await readInput(input), o);
      const png = (i = 0) => {
        const img = r.images[i];
        if (!img) throw new Error(`no sample ${i}: this result has ${r.images.length}`);
        return encodePng(img);
      };
      return { ...r, png, save: (file, i = 0) => writeFile(file, png(i)) };
    },
  };
}
