import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  gmsd,
  consistencyMSE,
  gaussianKernel,
  mse,
  psnr,
  ssim,
  ssimPlane,
  tensorToImage,
  type MetricImage,
} from '../engine/metrics.ts';
import { rand } from './helpers/device.ts';

const img = (
  width: number,
  height: number,
  channels: number,
  f: (y: number, x: number, c: number) => number,
): MetricImage => {
  const data = new Float64Array(width * height * channels);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      for (let c = 0; c < channels; c++) data[(y * width + x) * channels + c] = f(y, x, c);
  return { width, height, channels, data };
};

const near = (a: number, b: number, tol: number, what: string) =>
  assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

/** SSIM of one window position by the definition, with a 2D weight loop (independent of the separable code). */
function ssimBrute(a: MetricImage, b: MetricImage): number {
  const g = Array.from({ length: 11 }, (_, i) => Math.exp(-((i - 5) ** 2) / 4.5));
  const gs = g.reduce((s, v) => s + v, 0);
  const C1 = (0.01 * 255) ** 2;
  const C2 = (0.03 * 255) ** 2;
  let total = 0;
  for (let c = 0; c < a.channels; c++) {
    let s = 0;
    let cnt = 0;
    for (let y0 = 0; y0 + 11 <= a.height; y0++) {
      for (let x0 = 0; x0 + 11 <= a.width; x0++) {
        let m1 = 0;
        let m2 = 0;
        let e11 = 0;
        let e22 = 0;
        let e12 = 0;
        for (let j = 0; j < 11; j++) {
          for (let i = 0; i < 11; i++) {
            const w = (g[j] * g[i]) / (gs * gs);
            const p = ((y0 + j) * a.width + x0 + i) * a.channels + c;
            const u = a.data[p];
            const v = b.data[p];
            m1 += w * u;
            m2 += w * v;
            e11 += w * u * u;
            e22 += w * v * v;
            e12 += w * u * v;
          }
        }
        s +=
          ((2 * m1 * m2 + C1) * (2 * (e12 - m1 * m2) + C2)) /
          ((m1 * m1 + m2 * m2 + C1) * (e11 - m1 * m1 + e22 - m2 * m2 + C2));
        cnt++;
      }
    }
    total += s / cnt;
  }
  return total / a.channels;
}

// A deterministic pair, and its PSNR/SSIM computed with numpy + scipy.signal.correlate2d('valid') on float64 (the SR3
// repository's formulas): a(y,x,c) = (37x + 91y + 13((xy) mod 17) + 50c) mod 256, b = clip(a + ((13x + 7y + 5c) mod 31)
// - 15, 0, 255), 23 x 17 x 3.
const A = img(23, 17, 3, (y, x, c) => (x * 37 + y * 91 + ((x * y) % 17) * 13 + c * 50) % 256);
const Bimg = img(23, 17, 3, (y, x, c) =>
  Math.min(
    255,
    Math.max(0, ((x * 37 + y * 91 + ((x * y) % 17) * 13 + c * 50) % 256) + ((x * 13 + y * 7 + c * 5) % 31) - 15),
  ),
);

test('PSNR and SSIM of a fixed pair equal numpy/scipy values', () => {
  near(mse(A.data, Bimg.data), 76.84995737425405, 1e-10, 'mse');
  near(psnr(A, Bimg), 29.274367299186967, 1e-10, 'psnr');
  near(ssim(A, Bimg), 0.9929153292693433, 1e-12, 'ssim');
  near(ssim(A, Bimg), ssimBrute(A, Bimg), 1e-12, 'separable = brute force');
});

test('identical images: PSNR = Infinity, SSIM = 1', () => {
  const a = img(16, 13, 3, (y, x, c) => (x * 17 + y * 5 + c * 40) % 256);
  assert.is(psnr(a, a), Infinity);
  near(ssim(a, a), 1, 1e-12, 'ssim');
});

test('known MSE gives known PSNR; scale choice', () => {
  const a = img(12, 12, 3, (_y, x) => 100 + x);
  const b = img(12, 12, 3, (_y, x) => 105 + x); // every sample +5: MSE 25
  near(psnr(a, b), 20 * Math.log10(255 / 5), 1e-12, 'psnr +5');
  near(psnr(a, b), 34.15140352195873, 1e-10, 'psnr +5 value');
  // Half the samples off by 10, half equal: MSE 50.
  const c = img(12, 12, 3, (y, x) => 100 + x + (y % 2 ? 10 : 0));
  near(psnr(a, c), 10 * Math.log10((255 * 255) / 50), 1e-12, 'psnr half');
  near(psnr(a, b, 1), 20 * Math.log10(1 / 5), 1e-12, 'custom peak');
});

test('SSIM of constants and of a constant shift follows the luminance term', () => {
  const C1 = (0.01 * 255) ** 2;
  // Constant images: no variance, SSIM = luminance term (2 m1 m2 + C1) / (m1^2 + m2^2 + C1) (the C2 factor cancels).
  const a = img(11, 11, 1, () => 100);
  const b = img(11, 11, 1, () => 120);
  near(ssim(a, b), (2 * 100 * 120 + C1) / (100 ** 2 + 120 ** 2 + C1), 1e-12, 'constants');
  // A textured image plus a constant d: the contrast-structure term is exactly 1; the luminance term per window.
  const t = img(21, 15, 1, (y, x) => 80 + ((x * 7 + y * 3) % 11) * 6);
  const d = 12;
  const s = img(21, 15, 1, (y, x) => t.data[y * 21 + x] + d);
  const k = gaussianKernel(11, 1.5);
  let want = 0;
  let n = 0;
  for (let y0 = 0; y0 + 11 <= 15; y0++) {
    for (let x0 = 0; x0 + 11 <= 21; x0++) {
      let m = 0;
      for (let j = 0; j < 11; j++) for (let i = 0; i < 11; i++) m += k[j] * k[i] * t.data[(y0 + j) * 21 + x0 + i];
      want += (2 * m * (m + d) + C1) / (m * m + (m + d) ** 2 + C1);
      n++;
    }
  }
  near(ssim(t, s), want / n, 1e-12, 'shift');
  assert.ok(ssim(t, s) < 1 && ssim(t, s) > 0.9);
});

test('symmetric, per-channel mean, and decreasing with noise', () => {
  const a = img(20, 14, 3, (y, x, c) => 128 + 100 * Math.sin(x / 3 + c) * Math.cos(y / 4));
  const noise = rand(20 * 14 * 3, 5);
  const b1: MetricImage = { ...a, data: Array.from(a.data, (v, i) => v + 5 * noise[i]) };
  const b2: MetricImage = { ...a, data: Array.from(a.data, (v, i) => v + 25 * noise[i]) };
  near(ssim(a, b1), ssim(b1, a), 1e-14, 'ssim symmetric');
  assert.is(psnr(a, b1), psnr(b1, a));
  assert.ok(ssim(a, b1) > ssim(a, b2) && psnr(a, b1) > psnr(a, b2), 'more noise, lower scores');
  // The mean over channels of single-channel SSIMs.
  const ch = (im: MetricImage, c: number): MetricImage => ({
    width: im.width,
    height: im.height,
    channels: 1,
    data: Array.from({ length: im.width * im.height }, (_, i) => im.data[i * 3 + c]),
  });
  const per = [0, 1, 2].map((c) => ssim(ch(a, c), ch(b2, c)));
  near(ssim(a, b2), (per[0] + per[1] + per[2]) / 3, 1e-14, 'channel mean');
  near(ssim(a, b2), ssimBrute(a, b2), 1e-12, 'brute force');
});

test('the Gaussian window is cv2.getGaussianKernel(11, 1.5)', () => {
  const k = gaussianKernel();
  assert.is(k.length, 11);
  near(
    k.reduce((s, v) => s + v, 0),
    1,
    1e-15,
    'sum',
  );
  // Values of cv2.getGaussianKernel(11, 1.5) = normalised exp(-(i-5)^2 / 4.5) (computed with numpy).
  near(k[5], 0.26601172486179436, 1e-15, 'centre');
  near(k[0], 0.00102838008447911, 1e-15, 'edge');
  near(k[4], k[6], 0, 'symmetric');
});

test('consistency MSE and tensorToImage (the reference tensor2img)', () => {
  near(consistencyMSE([0, 0.5, -1, 1], [0, 0.5, -1, 0.5]), 0.25 / 4, 1e-15, 'consistency');
  const t = new Float32Array([-1, 1, 0, 2, -0.99, 0.5]); // 1 image, 1 channel, 2x3
  const im = tensorToImage(t, 1, 2, 3);
  // 0 -> 127.5, the only exact tie an f32 can make: to even, 128. 2 is clamped. -0.99 -> 1.275 -> 1; 0.5 -> 191.25.
  assert.equal(Array.from(im.data), [0, 255, 128, 255, 1, 191]);
  // NCHW -> HWC for the second image of a batch.
  const t2 = Float32Array.from({ length: 2 * 3 * 4 }, (_, i) => (i % 12) / 12 - (i >= 12 ? 0.5 : 0));
  const im2 = tensorToImage(t2, 3, 2, 2, 1);
  assert.is(im2.data.length, 12);
  const f = Math.fround;
  assert.is(im2.data[1 * 3 + 2], Math.round(f(f(f(9 / 12 - 0.5) + 1) * 0.5) * 255)); // pixel 1, channel 2: (1*3 + 2)*4 + 1 = 21, 21 % 12 = 9
});

test('errors: size mismatch, too small for the window, malformed', () => {
  const a = img(12, 12, 3, () => 1);
  assert.throws(
    () =>
      psnr(
        a,
        img(12, 11, 3, () => 1),
      ),
    /sizes differ/,
  );
  assert.throws(
    () =>
      ssim(
        img(10, 20, 1, () => 1),
        img(10, 20, 1, () => 1),
      ),
    /needs sides >= 11/,
  );
  assert.throws(() => psnr({ width: 2, height: 2, channels: 1, data: [1, 2, 3] }, a), /malformed/);
  assert.throws(() => mse([], []), /empty/);
  assert.throws(() => ssimPlane(new Float64Array(4), new Float64Array(4), 2, 2), /needs sides/);
});

// GMSD against test/reference/gmsd.py (Xue et al.'s MATLAB code in numpy), on images made by the same formula
test('gmsd matches the numpy reference; 0 for identical images; blur raises it', () => {
  const image = (h: number, w: number, k: number) => {
    const data = new Float64Array(h * w * 3);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let c = 0; c < 3; c++)
          data[(y * w + x) * 3 + c] = Math.floor(127.5 + 120 * Math.sin(0.37 * x * (c + 1) + 0.23 * y * (k + 1) + k));
    return { width: w, height: h, channels: 3, data };
  };
  for (const [h, w, want] of [
    [16, 16, 0.15561826274642732],
    [13, 18, 0.1612909259485903],
  ]) {
    const got = gmsd(image(h, w, 0), image(h, w, 1));
    assert.ok(Math.abs(got - want) < 1e-12, `${h}x${w}: ${got} vs ${want}`);
  }
  const a = image(20, 20, 0);
  assert.is(gmsd(a, a), 0);
  const blurred = { ...a, data: a.data.map((v, i) => (i >= 3 ? (v + a.data[i - 3]) / 2 : v)) };
  assert.ok(gmsd(a, blurred) > 0.01);
  assert.throws(() => gmsd(a, image(20, 21, 0)), /sizes differ/);
});

test.run();
