// Image quality metrics on the CPU (evaluation images are small): PSNR and SSIM on 0-255 values, and the LR
// consistency error of the SR3 paper (Table 1). Browser-safe: imports nothing from Node.
//
// Conventions, as the SR3 reference repository's core/metrics.py (calculate_psnr / calculate_ssim), which evaluates
// images after tensor2img (uint8):
// - PSNR = 20 log10(255 / sqrt(MSE)), MSE over every pixel and channel, float64; Infinity for identical images.
// - SSIM per channel with an 11x11 Gaussian window (sigma 1.5, as cv2.getGaussianKernel(11, 1.5) outer itself),
//   K1 = 0.01, K2 = 0.03, L = 255, over the 'valid' region only (cv2.filter2D(...)[5:-5, 5:-5]: windows that lie
//   fully inside the image), the mean of the SSIM map, then the mean over channels. Images need sides >= 11.
//   (The reference's calculate_ssim passes all three channels to cv2 at once, which filters each channel alone and
//   then averages everything: the same number as the per-channel mean.) No colour conversion, no border crop.

/** An image for the metrics: interleaved (HWC) samples on a 0-255 scale (uint8 data or floats). */
export interface MetricImage {
  width: number;
  height: number;
  channels: number;
  data: ArrayLike<number>;
}

function checkPair(a: MetricImage, b: MetricImage, what: string): void {
  for (const [im, name] of [
    [a, 'first'],
    [b, 'second'],
  ] as const) {
    if (
      !(im.width >= 1 && im.height >= 1 && im.channels >= 1) ||
      im.data.length !== im.width * im.height * im.channels
    ) {
      throw new Error(
        `${what}: the ${name} image is malformed (${im.width}x${im.height}x${im.channels} with ${im.data.length} samples)`,
      );
    }
  }
  if (a.width !== b.width || a.height !== b.height || a.channels !== b.channels) {
    throw new Error(
      `${what}: sizes differ: ${a.width}x${a.height}x${a.channels} vs ${b.width}x${b.height}x${b.channels}`,
    );
  }
}

/** Mean squared difference of two equal-length arrays, in float64. */
export function mse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`mse: lengths differ: ${a.length} vs ${b.length}`);
  if (a.length === 0) throw new Error('mse: empty arrays');
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    s += d * d;
  }
  return s / a.length;
}

/** PSNR in dB between two images on a 0-`peak` scale (default 255): Infinity when they are identical. */
export function psnr(a: MetricImage, b: MetricImage, peak = 255): number {
  checkPair(a, b, 'psnr');
  const m = mse(a.data, b.data);
  if (m === 0) return Infinity;
  return 20 * Math.log10(peak / Math.sqrt(m));
}

/** cv2.getGaussianKernel(size, sigma): exp(-(i - (size-1)/2)^2 / (2 sigma^2)), normalised to sum 1, float64. */
export function gaussianKernel(size = 11, sigma = 1.5): Float64Array {
  const k = new Float64Array(size);
  const c = (size - 1) / 2;
  let s = 0;
  for (let i = 0; i < size; i++) {
    k[i] = Math.exp(-((i - c) ** 2) / (2 * sigma * sigma));
    s += k[i];
  }
  for (let i = 0; i < size; i++) k[i] /= s;
  return k;
}

/** Gaussian-weighted sums over every valid window of a plane (separable: rows, then columns). */
function filterValid(x: Float64Array, h: number, w: number, k: Float64Array): Float64Array {
  const n = k.length;
  const ow = w - n + 1;
  const oh = h - n + 1;
  const tmp = new Float64Array(h * ow);
  for (let y = 0; y < h; y++) {
    for (let xo = 0; xo < ow; xo++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += k[j] * x[y * w + xo + j];
      tmp[y * ow + xo] = s;
    }
  }
  const out = new Float64Array(oh * ow);
  for (let yo = 0; yo < oh; yo++) {
    for (let xo = 0; xo < ow; xo++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += k[j] * tmp[(yo + j) * ow + xo];
      out[yo * ow + xo] = s;
    }
  }
  return out;
}

export interface SsimOptions {
  /** Dynamic range L (default 255). */
  range?: number;
  windowSize?: number;
  sigma?: number;
  k1?: number;
  k2?: number;
}

/** Mean SSIM of one channel plane (float64 values), over the valid windows. */
export function ssimPlane(a: Float64Array, b: Float64Array, h: number, w: number, o: SsimOptions = {}): number {
  const size = o.windowSize ?? 11;
  if (h < size || w < size)
    throw new Error(`ssim: the image is ${w}x${h}; SSIM with an ${size}x${size} window needs sides >= ${size}`);
  const L = o.range ?? 255;
  const C1 = ((o.k1 ?? 0.01) * L) ** 2;
  const C2 = ((o.k2 ?? 0.03) * L) ** 2;
  const k = gaussianKernel(size, o.sigma ?? 1.5);
  const n = h * w;
  const aa = new Float64Array(n);
  const bb = new Float64Array(n);
  const ab = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    aa[i] = a[i] * a[i];
    bb[i] = b[i] * b[i];
    ab[i] = a[i] * b[i];
  }
  const mu1 = filterValid(a, h, w, k);
  const mu2 = filterValid(b, h, w, k);
  const s11 = filterValid(aa, h, w, k);
  const s22 = filterValid(bb, h, w, k);
  const s12 = filterValid(ab, h, w, k);
  let sum = 0;
  for (let i = 0; i < mu1.length; i++) {
    const m1 = mu1[i];
    const m2 = mu2[i];
    const v1 = s11[i] - m1 * m1;
    const v2 = s22[i] - m2 * m2;
    const cov = s12[i] - m1 * m2;
    sum += ((2 * m1 * m2 + C1) * (2 * cov + C2)) / ((m1 * m1 + m2 * m2 + C1) * (v1 + v2 + C2));
  }
  return sum / mu1.length;
}

function plane(im: MetricImage, c: number): Float64Array {
  const n = im.width * im.height;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = im.data[i * im.channels + c];
  return out;
}

/** SSIM per channel (SR3 reference convention, see the top of this file), averaged over channels. */
export function ssim(a: MetricImage, b: MetricImage, o: SsimOptions = {}): number {
  checkPair(a, b, 'ssim');
  let s = 0;
  for (let c = 0; c < a.channels; c++) s += ssimPlane(plane(a, c), plane(b, c), a.height, a.width, o);
  return s / a.channels;
}

/**
 * The LR consistency error: MSE between the low-resolution input and the output downscaled to its size, both as
 * the engine's [-1, 1] tensors (any layout, same length). Divide by 4 for [0, 1] units, multiply by 127.5^2 for
 * 0-255 units. The paper reports it x1e-5.
 */
export function consistencyMSE(lr: ArrayLike<number>, outputDownscaled: ArrayLike<number>): number {
  return mse(lr, outputDownscaled);
}

/**
 * The reference's tensor2img for image `index` of an NCHW [-1, 1] tensor: clamp, (x+1)/2, * 255, round half to even,
 * as an interleaved uint8 MetricImage (what the reference computes its metrics on).
 */
export function tensorToImage(
  t: ArrayLike<number>,
  channels: number,
  height: number,
  width: number,
  index = 0,
): MetricImage & { data: Uint8Array } {
  const hw = height * width;
  if (t.length < (index + 1) * channels * hw)
    throw new Error(`tensorToImage: the tensor has ${t.length} values, too few for image ${index}`);
  const data = new Uint8Array(hw * channels);
  const f = Math.fround;
  for (let c = 0; c < channels; c++) {
    const base = (index * channels + c) * hw;
    for (let p = 0; p < hw; p++) {
      const v = Math.min(1, Math.max(-1, t[base + p]));
      const u = f(f(f(v) + 1) * 0.5) * 255;
      const x = f(u);
      const r = Math.round(x);
      data[p * channels + c] = Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
    }
  }
  return { width, height, channels, data };
}

/**
 * GMSD, gradient magnitude similarity deviation (Xue, Zhang, Mou and Bovik 2014), as their MATLAB code computes it:
 * luma Y = 0.2989 R + 0.5870 G + 0.1140 B on 0-255 (gray images as they are), a 2x2 mean with MATLAB's conv2 'same'
 * alignment (zero beyond the last row and column) kept at every second pixel, Prewitt gradients ([1 0 -1]/3, zero
 * padded, 'same'), GMS = (2 g1 g2 + 170) / (g1^2 + g2^2 + 170) per pixel, GMSD = the sample standard deviation of
 * GMS. 0 for identical images; lower is better (it tracks perceived quality, and blur and noise both raise it).
 */
export function gmsd(a: MetricImage, b: MetricImage): number {
  checkPair(a, b, 'gmsd');
  const g1 = gradientMagnitude(luma(a), a.height, a.width);
  const g2 = gradientMagnitude(luma(b), b.height, b.width);
  const n = g1.length;
  if (n < 2) throw new Error('gmsd: the image is too small (needs at least 2 pixels after the 2x downsampling)');
  const q = new Float64Array(n);
  let mean = 0;
  for (let i = 0; i < n; i++) {
    q[i] = (2 * g1[i] * g2[i] + 170) / (g1[i] * g1[i] + g2[i] * g2[i] + 170);
    mean += q[i];
  }
  mean /= n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (q[i] - mean) ** 2;
  return Math.sqrt(v / (n - 1));
}

function luma(im: MetricImage): Float64Array {
  const n = im.width * im.height;
  const y = new Float64Array(n);
  const C = im.channels;
  for (let i = 0; i < n; i++) {
    y[i] = C >= 3 ? 0.2989 * im.data[i * C] + 0.587 * im.data[i * C + 1] + 0.114 * im.data[i * C + 2] : im.data[i * C];
  }
  return y;
}

/** The 2x2 mean at every second pixel, then the Prewitt gradient magnitude (GMSD's steps). */
function gradientMagnitude(y: Float64Array, h: number, w: number): Float64Array {
  const at = (r: number, c: number) => (r < h && c < w ? y[r * w + c] : 0);
  const hd = Math.ceil(h / 2);
  const wd = Math.ceil(w / 2);
  const d = new Float64Array(hd * wd);
  for (let r = 0; r < hd; r++)
    for (let c = 0; c < wd; c++)
      d[r * wd + c] = (at(2 * r, 2 * c) + at(2 * r + 1, 2 * c) + at(2 * r, 2 * c + 1) + at(2 * r + 1, 2 * c + 1)) / 4;
  const dv = (r: number, c: number) => (r >= 0 && r < hd && c >= 0 && c < wd ? d[r * wd + c] : 0);
  const g = new Float64Array(hd * wd);
  for (let r = 0; r < hd; r++)
    for (let c = 0; c < wd; c++) {
      let gx = 0;
      let gy = 0;
      for (let k = -1; k <= 1; k++) {
        gx += (dv(r + k, c + 1) - dv(r + k, c - 1)) / 3;
        gy += (dv(r + 1, c + k) - dv(r - 1, c + k)) / 3;
      }
      g[r * wd + c] = Math.sqrt(gx * gx + gy * gy);
    }
  return g;
}
