// Pixels <-> the engine's tensors (browser-safe). An image is interleaved samples (HWC), 8 or 16 bits, with 1 (gray),
// 2 (gray + alpha), 3 (RGB) or 4 (RGBA) channels; a tensor is channels-first floats in [-1, 1] (v / max * 2 - 1,
// the reference's normalisation).
import type { Tensor3 } from './upscale.ts';

/** An image as the engine takes and gives it, in Node (engine/node/png.ts) and in a page alike. */
export interface PixelImage {
  width: number;
  height: number;
  /** 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA. */
  channels: 1 | 2 | 3 | 4;
  /** 8 (data is a Uint8Array) or 16 (data is a Uint16Array). */
  bitDepth: 8 | 16;
  /** width * height * channels samples, interleaved (HWC). */
  data: Uint8Array | Uint16Array;
}

/** Split an image into its colour tensor (gray replicated to `colorChannels` when the model wants RGB) and alpha. */
export function imageToTensors(img: PixelImage, colorChannels: number): { color: Tensor3; alpha: Tensor3 | null } {
  const { width: w, height: h, channels } = img;
  const max = img.bitDepth === 16 ? 65535 : 255;
  const hasAlpha = channels === 2 || channels === 4;
  const srcColor = hasAlpha ? channels - 1 : channels;
  if (colorChannels !== 1 && colorChannels !== 3)
    throw new Error(`a model with ${colorChannels} image channels cannot take pictures`);
  const color = new Float32Array(colorChannels * h * w);
  const alpha = hasAlpha ? new Float32Array(h * w) : null;
  for (let p = 0; p < h * w; p++) {
    const base = p * channels;
    for (let c = 0; c < colorChannels; c++) {
      let v: number;
      if (srcColor === colorChannels) v = img.data[base + c];
      else if (srcColor === 1)
        v = img.data[base]; // gray -> RGB
      else v = 0.299 * img.data[base] + 0.587 * img.data[base + 1] + 0.114 * img.data[base + 2]; // RGB -> gray model
      color[c * h * w + p] = (v / max) * 2 - 1;
    }
    if (alpha) alpha[p] = (img.data[base + channels - 1] / max) * 2 - 1;
  }
  return {
    color: { channels: colorChannels, height: h, width: w, data: color },
    alpha: alpha ? { channels: 1, height: h, width: w, data: alpha } : null,
  };
}

/** The output image: same colour type and bit depth as the input had (gray in, gray out), alpha merged back. */
export function tensorsToImage(
  color: Tensor3,
  alpha: Tensor3 | null,
  like: { channels: 1 | 2 | 3 | 4; bitDepth: 8 | 16 },
): PixelImage {
  const { height: h, width: w } = color;
  const max = like.bitDepth === 16 ? 65535 : 255;
  const wantAlpha = like.channels === 2 || like.channels === 4;
  const outColor = wantAlpha ? like.channels - 1 : like.channels;
  const data = like.bitDepth === 16 ? new Uint16Array(h * w * like.channels) : new Uint8Array(h * w * like.channels);
  const q = (v: number) => {
    const x = ((Math.min(1, Math.max(-1, v)) + 1) / 2) * max;
    return Math.round(x);
  };
  for (let p = 0; p < h * w; p++) {
    const base = p * like.channels;
    if (outColor === color.channels) {
      for (let c = 0; c < outColor; c++) data[base + c] = q(color.data[c * h * w + p]);
    } else if (outColor === 1) {
      let s = 0;
      for (let c = 0; c < color.channels; c++) s += color.data[c * h * w + p];
      data[base] = q(s / color.channels);
    } else {
      for (let c = 0; c < outColor; c++) data[base + c] = q(color.data[p]);
    }
    if (wantAlpha) data[base + like.channels - 1] = alpha ? q(alpha.data[p]) : max;
  }
  return { width: w, height: h, channels: like.channels, bitDepth: like.bitDepth, data };
}
