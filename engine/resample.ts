// Resampling and pixel conversion on the GPU: bicubic up/down-scaling of NCHW float32 tensors, pixels <-> [-1, 1].
//
//   const rs = await Resampler.create(ctx);
//   ctx.run([rs.upscale({ input, output, batch: 1, channels: 3, inH: 64, inW: 64, factor: 4, kernel: BICUBIC_TORCH,
//                         clamp: true })]);
//
// Every function checks shapes and buffer sizes and returns a recorded Dispatch (replayable). Browser-safe.
//
// Which kernel: the SR3 reference's data scripts (PIL) make LR and the condition with PIL's BICUBIC (BICUBIC_PIL);
// ../shared/reference's natural4x checkpoint was trained on LR = F.interpolate(HR, 1/4, bicubic, antialias=True)
// (BICUBIC_TORCH_AA) and condition = F.interpolate(LR, 4, bicubic) clamped to [-1, 1] (BICUBIC_TORCH, clamp: true).
// Note: PyTorch's antialias=True path uses Keys' a = -0.5 (as PIL; aten UpSampleKernel.cpp, aa_filter), whatever the
// non-antialiased path uses (-0.75).

import { ceilDiv, type Dispatch, type GpuContext } from './gpu.ts';
import {
  PIXELS_TO_TENSOR_WGSL,
  RESIZE_FILTER_WGSL,
  RESIZE_INTERP_WGSL,
  RESIZE_UNIFORM,
  TENSOR_TO_PIXELS_WGSL,
  TO_PIXELS_UNIFORM,
  TO_TENSOR_UNIFORM,
} from '../shaders/resample.ts';

/**
 * 'interp': 4x4-tap interpolation at PyTorch's source coordinates with border replication (F.interpolate bicubic,
 * antialias=False); downscaling with it aliases, as PyTorch's does.
 * 'filter': PIL's support-scaled, normalised filter, cut at the borders (Image.resize BICUBIC; PyTorch antialias=True).
 */
export type ResizeMethod = 'interp' | 'filter';

/** A bicubic kernel: the method and Keys' parameter a. */
export interface CubicKernel {
  method: ResizeMethod;
  a: number;
}

/** torch.nn.functional.interpolate(mode='bicubic', align_corners=False) (antialias=False). */
export const BICUBIC_TORCH: Readonly<CubicKernel> = Object.freeze({ method: 'interp', a: -0.75 });
/** torch.nn.functional.interpolate(mode='bicubic', align_corners=False, antialias=True): PIL's filter, a = -0.5. */
export const BICUBIC_TORCH_AA: Readonly<CubicKernel> = Object.freeze({ method: 'filter', a: -0.5 });
/** PIL Image.resize(..., Image.BICUBIC), computed in float (PIL rounds to 8 bits between its two passes; we do not). */
export const BICUBIC_PIL: Readonly<CubicKernel> = Object.freeze({ method: 'filter', a: -0.5 });
/** Keys' a = -0.5 at PyTorch's coordinates with border replication (the PIL-style kernel in PyTorch's scheme). */
export const BICUBIC_KEYS: Readonly<CubicKernel> = Object.freeze({ method: 'interp', a: -0.5 });

export interface ResizeOptions {
  /** NCHW f32 source and destination storage buffers (may be bigger; see the offsets). */
  input: GPUBuffer;
  output: GPUBuffer;
  batch: number;
  channels: number;
  inH: number;
  inW: number;
  outH: number;
  outW: number;
  kernel: CubicKernel;
  /** Clamp the result to [-1, 1] (the reference's condition recipe). */
  clamp?: boolean;
  /** Element offsets into input and output (default 0). */
  inOffset?: number;
  outOffset?: number;
  label?: string;
}

export type ScaleOptions = Omit<ResizeOptions, 'outH' | 'outW' | 'inH' | 'inW'> & {
  inH: number;
  inW: number;
  /** Integer factor: output = input * factor (upscale) or input / factor (downscale; input divisible by it). */
  factor: number;
};

export interface ToTensorOptions {
  /** Packed samples: bytes (8-bit) or little-endian u16 (16-bit), interleaved HWC, images one after another. */
  pixels: GPUBuffer;
  output: GPUBuffer;
  batch: number;
  height: number;
  width: number;
  /** Samples per pixel in `pixels` (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA). */
  inChannels: number;
  /** For each output channel, the input sample it takes (default [0, 1, ..., inChannels-1]; gray -> RGB: [0, 0, 0]). */
  channelMap?: number[];
  bits?: 8 | 16;
  outOffset?: number;
  label?: string;
}

export interface ToPixelsOptions {
  /** NCHW f32 tensor(s) in [-1, 1]: `input` with `channels` channels, optional `extra` with `extraChannels`. */
  input: GPUBuffer;
  channels: number;
  extra?: GPUBuffer;
  extraChannels?: number;
  /** Packed output (bytes or u16 samples, interleaved HWC). */
  pixels: GPUBuffer;
  batch: number;
  height: number;
  width: number;
  /**
   * For each output sample per pixel, its source: 0..3 a channel of `input`, 4..7 channel (m - 4) of `extra`
   * (default [0, ..., channels-1]; RGB + separate alpha: [0, 1, 2, 4]).
   */
  channelMap?: number[];
  bits?: 8 | 16;
  inOffset?: number;
  extraOffset?: number;
  label?: string;
}

const WG = 256;
const MAX_GROUPS = 65535;

/** Workgroups [x, y] for `threads` threads (WG per group), x <= 65535; the kernels fold y back into a flat index. */
export function flatWorkgroups(threads: number): [number, number] {
  const groups = Math.max(1, ceilDiv(threads, WG));
  if (groups <= MAX_GROUPS) return [groups, 1];
  const y = ceilDiv(groups, MAX_GROUPS);
  return [ceilDiv(groups, y), y];
}

function dim(v: number, name: string, max = 1 << 24): number {
  if (!Number.isInteger(v) || v < 1 || v > max)
    throw new Error(`resample: ${name} must be an integer from 1 to ${max}, got ${v}`);
  return v;
}

function offset(v: number | undefined, name: string): number {
  const o = v ?? 0;
  if (!Number.isInteger(o) || o < 0 || o > 0xffffffff)
    throw new Error(`resample: ${name} must be a non-negative integer, got ${o}`);
  return o;
}

function fits(buf: GPUBuffer, elems: number, what: string, bytesPer = 4): void {
  if (elems * bytesPer > buf.size) {
    throw new Error(`resample: ${what} needs ${elems * bytesPer} bytes, ${buf.label || 'its buffer'} has ${buf.size}`);
  }
}

function channelMapWord(map: number[], max: number, what: string): number {
  if (map.length < 1 || map.length > 4) throw new Error(`resample: ${what} needs 1 to 4 entries, got ${map.length}`);
  let w = 0;
  map.forEach((m, c) => {
    if (!Number.isInteger(m) || m < 0 || m >= max)
      throw new Error(`resample: ${what}[${c}] = ${m} is not a valid source (0..${max - 1})`);
    w |= m << (8 * c);
  });
  return w >>> 0;
}

/** The resampling pipelines on one device. */
export class Resampler {
  private dummyBuf: GPUBuffer | null = null;

  private constructor(
    private readonly ctx: GpuContext,
    private readonly pipes: Record<
      'interp' | 'interpClamp' | 'filter' | 'filterClamp' | 'toTensor' | 'toPixels',
      GPUComputePipeline
    >,
  ) {}

  static async create(ctx: GpuContext): Promise<Resampler> {
    const [interp, interpClamp, filter, filterClamp, toTensor, toPixels] = await Promise.all([
      ctx.pipeline(RESIZE_INTERP_WGSL, { label: 'resize.interp' }),
      ctx.pipeline(RESIZE_INTERP_WGSL, { label: 'resize.interp+clamp', constants: { CLAMP: 1 } }),
      ctx.pipeline(RESIZE_FILTER_WGSL, { label: 'resize.filter' }),
      ctx.pipeline(RESIZE_FILTER_WGSL, { label: 'resize.filter+clamp', constants: { CLAMP: 1 } }),
      ctx.pipeline(PIXELS_TO_TENSOR_WGSL, { label: 'pixels-to-tensor' }),
      ctx.pipeline(TENSOR_TO_PIXELS_WGSL, { label: 'tensor-to-pixels' }),
    ]);
    return new Resampler(ctx, { interp, interpClamp, filter, filterClamp, toTensor, toPixels });
  }

  /** Resize every (image, channel) plane from inH x inW to outH x outW with a bicubic kernel. */
  resize(o: ResizeOptions): Dispatch {
    const planes = dim(o.batch, 'batch', 65536) * dim(o.channels, 'channels', 65536);
    const inH = dim(o.inH, 'inH');
    const inW = dim(o.inW, 'inW');
    const outH = dim(o.outH, 'outH');
    const outW = dim(o.outW, 'outW');
    const k = o.kernel;
    if (!k || (k.method !== 'interp' && k.method !== 'filter') || !Number.isFinite(k.a)) {
      throw new Error(`resample: kernel must be { method: 'interp' | 'filter', a: number }, got ${JSON.stringify(k)}`);
    }
    const total = planes * outH * outW;
    if (total > 0xffffffff || planes * inH * inW > 0xffffffff) throw new Error('resample: tensor over 2^32 elements');
    const inOff = offset(o.inOffset, 'inOffset');
    const outOff = offset(o.outOffset, 'outOffset');
    if (o.input === o.output)
      throw new Error('resample: input and output must be different buffers (no in-place resize)');
    fits(o.input, inOff + planes * inH * inW, 'the input');
    fits(o.output, outOff + total, 'the output');
    const pipeline =
      k.method === 'interp'
        ? o.clamp
          ? this.pipes.interpClamp
          : this.pipes.interp
        : o.clamp
          ? this.pipes.filterClamp
          : this.pipes.filter;
    const label = o.label ?? `resize.${k.method}`;
    const u = this.ctx.uniform(
      RESIZE_UNIFORM.pack(
        // PyTorch's area_pixel_compute_scale: in / out (for an integer factor f: exactly f or 1/f when f is a power of 2)
        { planes, inH, inW, outH, outW, total, inOff, outOff, scaleY: inH / outH, scaleX: inW / outW, a: k.a },
        label,
      ),
      `${label}.params`,
    );
    return {
      pipeline,
      bindGroup: this.ctx.bind(pipeline, [o.input, o.output, u], label),
      workgroups: flatWorkgroups(total),
      label,
      owned: [u],
    };
  }

  /** Upscale by an integer factor (output inH*factor x inW*factor). */
  upscale(o: ScaleOptions): Dispatch {
    const f = dim(o.factor, 'factor', 64);
    return this.resize({ ...o, outH: o.inH * f, outW: o.inW * f });
  }

  /** Downscale by an integer factor (input sides divisible by it). Use an antialiasing kernel (BICUBIC_TORCH_AA). */
  downscale(o: ScaleOptions): Dispatch {
    const f = dim(o.factor, 'factor', 64);
    if (o.inH % f || o.inW % f) throw new Error(`resample: ${o.inH}x${o.inW} is not divisible by the factor ${f}`);
    return this.resize({ ...o, outH: o.inH / f, outW: o.inW / f });
  }

  /** Packed 8/16-bit interleaved pixels -> NCHW f32 in [-1, 1] (v / 127.5 - 1, or v / 32767.5 - 1). */
  toTensor(o: ToTensorOptions): Dispatch {
    const B = dim(o.batch, 'batch', 65536);
    const H = dim(o.height, 'height');
    const W = dim(o.width, 'width');
    const inC = dim(o.inChannels, 'inChannels', 4);
    const map = o.channelMap ?? Array.from({ length: inC }, (_, i) => i);
    const mapWord = channelMapWord(map, inC, 'channelMap');
    const bits = o.bits ?? 8;
    if (bits !== 8 && bits !== 16) throw new Error(`resample: bits must be 8 or 16, got ${bits}`);
    const total = B * map.length * H * W;
    if (total > 0xffffffff || B * H * W * inC > 0xffffffff) throw new Error('resample: image over 2^32 samples');
    const outOff = offset(o.outOffset, 'outOffset');
    fits(o.pixels, B * H * W * inC, 'the pixels', bits / 8);
    fits(o.output, outOff + total, 'the output');
    const label = o.label ?? 'pixels-to-tensor';
    const u = this.ctx.uniform(
      TO_TENSOR_UNIFORM.pack({ H, W, inC, outC: map.length, map: mapWord, total, bits, outOff }, label),
      `${label}.params`,
    );
    const pipeline = this.pipes.toTensor;
    return {
      pipeline,
      bindGroup: this.ctx.bind(pipeline, [o.pixels, o.output, u], label),
      workgroups: flatWorkgroups(total),
      label,
    };
  }

  /**
   * NCHW f32 in [-1, 1] -> packed interleaved 8/16-bit pixels (clamped, (x+1)/2 * 255, rounded half to even, as the
   * reference's tensor2img). The pixel buffer is written whole words: size it to a multiple of 4 bytes.
   */
  toPixels(o: ToPixelsOptions): Dispatch {
    const B = dim(o.batch, 'batch', 65536);
    const H = dim(o.height, 'height');
    const W = dim(o.width, 'width');
    const cA = dim(o.channels, 'channels', 4);
    const cB = o.extra ? dim(o.extraChannels ?? 1, 'extraChannels', 4) : 0;
    const map = o.channelMap ?? Array.from({ length: cA }, (_, i) => i);
    map.forEach((m, c) => {
      if (m < 4 && m >= cA) throw new Error(`resample: channelMap[${c}] = ${m}, but the input has ${cA} channels`);
      if (m >= 4 && m - 4 >= cB)
        throw new Error(`resample: channelMap[${c}] = ${m} reads channel ${m - 4} of an extra input with ${cB}`);
    });
    const mapWord = channelMapWord(map, 8, 'channelMap');
    const bits = o.bits ?? 8;
    if (bits !== 8 && bits !== 16) throw new Error(`resample: bits must be 8 or 16, got ${bits}`);
    const samples = B * H * W * map.length;
    if (samples > 0xffffffff) throw new Error('resample: image over 2^32 samples');
    const words = ceilDiv(samples, bits === 8 ? 4 : 2);
    const offA = offset(o.inOffset, 'inOffset');
    const offB = offset(o.extraOffset, 'extraOffset');
    fits(o.input, offA + B * cA * H * W, 'the input');
    if (o.extra) fits(o.extra, offB + B * cB * H * W, 'the extra input');
    fits(o.pixels, words, 'the pixels');
    const label = o.label ?? 'tensor-to-pixels';
    const u = this.ctx.uniform(
      TO_PIXELS_UNIFORM.pack(
        { H, W, outC: map.length, map: mapWord, samples, words, bits, cA, cB: Math.max(cB, 1), offA, offB },
        label,
      ),
      `${label}.params`,
    );
    const pipeline = this.pipes.toPixels;
    const extra = o.extra ?? this.dummy();
    return {
      pipeline,
      bindGroup: this.ctx.bind(pipeline, [o.input, extra, o.pixels, u], label),
      workgroups: flatWorkgroups(words),
      label,
    };
  }

  private dummy(): GPUBuffer {
    this.dummyBuf ??= this.ctx.buffer(16, 'resample.unused');
    return this.dummyBuf;
  }
}

/**
 * Channel maps for an image with `channels` samples per pixel (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA): `rgb` makes
 * the 3-channel tensor the model sees (gray is repeated), `alpha` the 1-channel alpha tensor (null when there is
 * none), and `output` the toPixels map writing the same layout back from an RGB tensor plus an `extra` alpha tensor
 * (gray is written from the RGB tensor's first channel).
 */
export function pixelLayout(channels: number): { rgb: number[]; alpha: number[] | null; output: number[] } {
  switch (channels) {
    case 1:
      return { rgb: [0, 0, 0], alpha: null, output: [0] };
    case 2:
      return { rgb: [0, 0, 0], alpha: [1], output: [0, 4] };
    case 3:
      return { rgb: [0, 1, 2], alpha: null, output: [0, 1, 2] };
    case 4:
      return { rgb: [0, 1, 2], alpha: [3], output: [0, 1, 2, 4] };
    default:
      throw new Error(`resample: an image has 1 to 4 channels, got ${channels}`);
  }
}

/** Pack 8-bit samples into u32 words (little-endian, zero-padded) for upload. */
export function packBytes(data: Uint8Array): Uint32Array<ArrayBuffer> {
  const out = new Uint32Array(Math.max(1, ceilDiv(data.length, 4)));
  new Uint8Array(out.buffer).set(data);
  return out;
}

/** Pack 16-bit samples into u32 words (little-endian, zero-padded) for upload. */
export function packU16(data: Uint16Array): Uint32Array<ArrayBuffer> {
  const out = new Uint32Array(Math.max(1, ceilDiv(data.length, 2)));
  const dv = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) dv.setUint16(2 * i, data[i], true);
  return out;
}

/** Unpack words read back from toPixels into `n` 8-bit samples. */
export function unpackBytes(words: Uint32Array, n: number): Uint8Array {
  return new Uint8Array(words.buffer, words.byteOffset, n).slice();
}

/** Unpack words read back from toPixels into `n` 16-bit samples. */
export function unpackU16(words: Uint32Array, n: number): Uint16Array {
  const dv = new DataView(words.buffer, words.byteOffset, words.byteLength);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = dv.getUint16(2 * i, true);
  return out;
}
