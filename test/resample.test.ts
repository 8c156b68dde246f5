import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  BICUBIC_KEYS,
  BICUBIC_PIL,
  BICUBIC_TORCH,
  BICUBIC_TORCH_AA,
  flatWorkgroups,
  packBytes,
  packU16,
  pixelLayout,
  Resampler,
  unpackBytes,
  unpackU16,
  type CubicKernel,
} from '../engine/resample.ts';
import { readFileSync } from 'node:fs';
import { device, rand, releaseDevice } from './helpers/device.ts';
import { keys, resizeRef, roundHalfEven, toPixelsRef, toTensorRef } from './reference/resample-ref.ts';

let rsP: Promise<Resampler> | null = null;
const resampler = async () => (rsP ??= device().then((ctx) => Resampler.create(ctx)));

interface Case {
  B: number;
  C: number;
  inH: number;
  inW: number;
  outH: number;
  outW: number;
  kernel: CubicKernel;
  clamp?: boolean;
}

async function gpuResize(x: Float32Array, c: Case): Promise<Float32Array> {
  const ctx = await device();
  const rs = await resampler();
  const input = ctx.upload(x);
  const n = c.B * c.C * c.outH * c.outW;
  const output = ctx.buffer(n * 4, 'resized');
  ctx.run([rs.resize({ input, output, batch: c.B, channels: c.C, ...c })]);
  const out = await ctx.read(output, n * 4);
  input.destroy();
  output.destroy();
  return out;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.is(a.length, b.length, 'length');
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

async function checkCase(c: Case, seed: number, tol = 2e-6): Promise<Float32Array> {
  const x = rand(c.B * c.C * c.inH * c.inW, seed);
  const got = await gpuResize(x, c);
  const want = resizeRef(x, c.B * c.C, c.inH, c.inW, c.outH, c.outW, c.kernel.method, c.kernel.a, c.clamp);
  const d = maxDiff(got, want);
  assert.ok(d <= tol, `${JSON.stringify(c)}: max |gpu - ref| = ${d}`);
  return got;
}

test('bicubic upscale, PyTorch kernel (a = -0.75, replicated border): GPU = reference', async () => {
  await checkCase({ B: 2, C: 3, inH: 5, inW: 7, outH: 20, outW: 28, kernel: BICUBIC_TORCH }, 1);
  await checkCase({ B: 1, C: 2, inH: 6, inW: 3, outH: 18, outW: 9, kernel: BICUBIC_TORCH }, 2); // odd factor 3
  await checkCase({ B: 3, C: 1, inH: 1, inW: 4, outH: 2, outW: 8, kernel: BICUBIC_TORCH }, 3); // a 1-pixel-high image
});

test('bicubic upscale, Keys a = -0.5 at PyTorch coordinates, and PIL filter upscale: GPU = reference', async () => {
  await checkCase({ B: 2, C: 3, inH: 7, inW: 5, outH: 28, outW: 20, kernel: BICUBIC_KEYS }, 4);
  await checkCase({ B: 2, C: 3, inH: 7, inW: 5, outH: 28, outW: 20, kernel: BICUBIC_PIL }, 5);
  await checkCase({ B: 1, C: 3, inH: 5, inW: 9, outH: 15, outW: 27, kernel: BICUBIC_PIL }, 6);
});

test('antialiased downscale (PyTorch antialias=True / PIL reduce): GPU = reference, factors 2, 3, 4', async () => {
  await checkCase({ B: 2, C: 3, inH: 20, inW: 28, outH: 5, outW: 7, kernel: BICUBIC_TORCH_AA }, 7);
  await checkCase({ B: 2, C: 2, inH: 9, inW: 15, outH: 3, outW: 5, kernel: BICUBIC_TORCH_AA }, 8);
  await checkCase({ B: 1, C: 3, inH: 14, inW: 6, outH: 7, outW: 3, kernel: BICUBIC_TORCH_AA }, 9);
  await checkCase({ B: 1, C: 1, inH: 12, inW: 16, outH: 3, outW: 4, kernel: { method: 'filter', a: -0.75 } }, 10);
  // Non-antialiased downscale is PyTorch's antialias=False (4 taps, aliasing) and still matches.
  await checkCase({ B: 1, C: 3, inH: 12, inW: 16, outH: 3, outW: 4, kernel: BICUBIC_TORCH }, 11);
});

test('arbitrary (non-integer ratio) sizes, both methods', async () => {
  await checkCase({ B: 1, C: 3, inH: 7, inW: 5, outH: 10, outW: 13, kernel: BICUBIC_TORCH }, 12);
  await checkCase({ B: 2, C: 1, inH: 13, inW: 10, outH: 5, outW: 7, kernel: BICUBIC_TORCH_AA }, 13);
});

// Outputs of PyTorch 1.13 (F.interpolate bicubic, float64) and PIL 9.4 (Image.resize BICUBIC on float 'F' images),
// made by test/reference/make-resample-fixture.py.
interface FixtureCase {
  name: string;
  source: 'torch' | 'pil';
  shape: [number, number, number, number];
  size: [number, number];
  antialias?: boolean;
  clamp?: boolean;
  input: number[];
  output: number[];
}
const fixture = JSON.parse(readFileSync(new URL('./reference/resample-fixture.json', import.meta.url), 'utf8')) as {
  cases: FixtureCase[];
};

test('GPU and the TS reference reproduce PyTorch and PIL outputs (up, down, antialias, clamp)', async () => {
  assert.ok(fixture.cases.length >= 10);
  for (const fc of fixture.cases) {
    const [B, C, inH, inW] = fc.shape;
    const [outH, outW] = fc.size;
    const kernel = fc.source === 'pil' ? BICUBIC_PIL : fc.antialias ? BICUBIC_TORCH_AA : BICUBIC_TORCH;
    const got = await gpuResize(Float32Array.from(fc.input), { B, C, inH, inW, outH, outW, kernel, clamp: fc.clamp });
    const dGpu = maxDiff(got, fc.output);
    assert.ok(dGpu <= 2e-6, `${fc.name}: GPU vs ${fc.source}: ${dGpu}`);
    const ref = resizeRef(fc.input, B * C, inH, inW, outH, outW, kernel.method, kernel.a, fc.clamp);
    const dRef = maxDiff(ref, fc.output);
    assert.ok(dRef <= 1e-6, `${fc.name}: TS reference vs ${fc.source}: ${dRef}`);
    if (process.env.SR3_VERBOSE) console.log(`${fc.name}: gpu ${dGpu.toExponential(2)} ref ${dRef.toExponential(2)}`);
  }
});

test('clamp to [-1, 1]: overshoot at a step edge is cut, the rest unchanged', async () => {
  const c: Case = { B: 1, C: 1, inH: 4, inW: 6, outH: 16, outW: 24, kernel: BICUBIC_TORCH };
  const step = new Float32Array(24).map((_, i) => (i % 6 < 3 ? -1 : 1));
  const raw = await gpuResize(step, c);
  const clamped = await gpuResize(step, { ...c, clamp: true });
  const over = Array.from(raw).filter((v) => Math.abs(v) > 1 + 1e-3).length;
  assert.ok(over > 0, 'bicubic overshoots a step');
  for (let i = 0; i < raw.length; i++) assert.is(clamped[i], Math.min(1, Math.max(-1, raw[i])));
  await checkCase({ B: 2, C: 3, inH: 5, inW: 4, outH: 10, outW: 8, kernel: BICUBIC_TORCH, clamp: true }, 14);
  await checkCase({ B: 1, C: 3, inH: 8, inW: 12, outH: 2, outW: 3, kernel: BICUBIC_TORCH_AA, clamp: true }, 15);
});

test('hand-computed: a single bright pixel upscaled x4 gives keys(d)^2 weights', async () => {
  // 5x5, one 1 at (2, 2). Output (9, 9): real = 0.25 * 9.5 - 0.5 = 1.875, taps 0..3, the one at 2 is 0.125 away.
  const x = new Float32Array(25);
  x[12] = 1;
  for (const a of [-0.75, -0.5]) {
    const out = await gpuResize(x, { B: 1, C: 1, inH: 5, inW: 5, outH: 20, outW: 20, kernel: { method: 'interp', a } });
    const k = (t: number) => (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1; // |t| < 1
    const k2 = (t: number) => a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a; // 1 <= |t| < 2
    assert.ok(Math.abs(out[9 * 20 + 9] - k(0.125) ** 2) < 1e-6, `a=${a}: ${out[9 * 20 + 9]} vs ${k(0.125) ** 2}`);
    // Output (9, 5): x real = 0.875 (taps -1..2 -> 0, 0, 1, 2), the bright one at distance 1.125.
    assert.ok(Math.abs(out[9 * 20 + 5] - k(0.125) * k2(1.125)) < 1e-6);
    assert.ok(Math.abs(out[9 * 20 + 5] - keys(0.125, a) * keys(1.125, a)) < 1e-6);
    // Far away: exactly 0. Sum over the output = 16 (each input pixel's weights sum to 1 per output, 4x4 outputs).
    assert.is(out[0], 0);
    const sum = out.reduce((s, v) => s + v, 0);
    assert.ok(Math.abs(sum - 16) < 1e-4, `mass ${sum}`);
  }
});

test('a constant image stays constant: every kernel, up and down, and down(up(c)) = c', async () => {
  const ctx = await device();
  const rs = await resampler();
  const c = 0.375;
  for (const kernel of [BICUBIC_TORCH, BICUBIC_KEYS, BICUBIC_PIL, { method: 'filter' as const, a: -0.75 }]) {
    const up = await gpuResize(new Float32Array(2 * 3 * 5 * 6).fill(c), {
      B: 2,
      C: 3,
      inH: 5,
      inW: 6,
      outH: 15,
      outW: 18,
      kernel,
    });
    assert.ok(maxDiff(up, new Float32Array(up.length).fill(c)) < 1e-6, `${JSON.stringify(kernel)} up`);
  }
  // Upscale then antialiased downscale on the GPU, chained in one submission.
  const input = ctx.upload(new Float32Array(3 * 7 * 5).fill(-c));
  const mid = ctx.buffer(3 * 28 * 20 * 4);
  const back = ctx.buffer(3 * 7 * 5 * 4);
  ctx.run([
    rs.upscale({
      input,
      output: mid,
      batch: 1,
      channels: 3,
      inH: 7,
      inW: 5,
      factor: 4,
      kernel: BICUBIC_TORCH,
      clamp: true,
    }),
    rs.downscale({
      input: mid,
      output: back,
      batch: 1,
      channels: 3,
      inH: 28,
      inW: 20,
      factor: 4,
      kernel: BICUBIC_TORCH_AA,
    }),
  ]);
  const out = await ctx.read(back, 3 * 7 * 5 * 4);
  assert.ok(maxDiff(out, new Float32Array(out.length).fill(-c)) < 1e-6);
});

test('linear ramps: Keys a = -0.5 reproduces them (and quadratics) away from the borders; antialiased downscale too', async () => {
  const W = 16;
  const f = (x: number) => 0.02 * x * x - 0.1 * x + 0.3;
  const x = Float32Array.from({ length: 3 * W }, (_, i) => f(i % W)); // 3 rows of the same quadratic
  const up = await gpuResize(x, { B: 1, C: 1, inH: 3, inW: W, outH: 12, outW: 4 * W, kernel: BICUBIC_KEYS });
  for (let ox = 8; ox < 4 * W - 8; ox++) {
    const xs = 0.25 * (ox + 0.5) - 0.5;
    assert.ok(Math.abs(up[4 * W + ox] - f(xs)) < 2e-6, `x=${xs}: ${up[4 * W + ox]} vs ${f(xs)}`);
  }
  // a = -0.75 keeps constants but not ramps (it is not 2nd-order accurate): a measurable deviation.
  const ramp = Float32Array.from({ length: W }, (_, i) => 0.1 * i);
  const upT = await gpuResize(ramp, { B: 1, C: 1, inH: 1, inW: W, outH: 1, outW: 4 * W, kernel: BICUBIC_TORCH });
  let dev = 0;
  for (let ox = 8; ox < 4 * W - 8; ox++) dev = Math.max(dev, Math.abs(upT[ox] - 0.1 * (0.25 * (ox + 0.5) - 0.5)));
  assert.ok(dev > 1e-3 && dev < 1e-2, `a=-0.75 ramp deviation ${dev}`);
  // Antialiased 4x downscale of a ramp: the symmetric, normalised window returns the ramp at the output centres.
  const R = 40;
  const r = Float32Array.from({ length: R }, (_, i) => 0.05 * i - 1);
  const dn = await gpuResize(r, { B: 1, C: 1, inH: 1, inW: R, outH: 1, outW: R / 4, kernel: BICUBIC_TORCH_AA });
  for (let ox = 2; ox < R / 4 - 2; ox++) assert.ok(Math.abs(dn[ox] - (0.05 * (4 * ox + 1.5) - 1)) < 2e-6);
});

test('antialiasing: fine patterns vanish with the filter and alias without it', async () => {
  const H = 12;
  const W = 16;
  const x = Float32Array.from({ length: H * W }, (_, i) => (((i % W) + Math.floor(i / W)) % 2 ? 1 : -1));
  const aa = await gpuResize(x, { B: 1, C: 1, inH: H, inW: W, outH: H / 2, outW: W / 2, kernel: BICUBIC_TORCH_AA });
  // Interior: every window pairs each tap with one of opposite parity at the same distance: exactly 0.
  for (let y = 2; y < H / 2 - 2; y++)
    for (let xx = 2; xx < W / 2 - 2; xx++) assert.ok(Math.abs(aa[y * (W / 2) + xx]) < 1e-6);
  // Period-3 columns cos(2 pi x / 3), downscaled x3: without antialiasing every output samples x = 3o + 1 (t = 0) and
  // the pattern aliases to the constant cos(2 pi / 3) = -0.5; the antialiased 12-tap window sums whole periods: 0.
  const W3 = 30;
  const p3 = Float32Array.from({ length: 6 * W3 }, (_, i) => Math.cos((2 * Math.PI * (i % W3)) / 3));
  const al = await gpuResize(p3, { B: 1, C: 1, inH: 6, inW: W3, outH: 2, outW: W3 / 3, kernel: BICUBIC_TORCH });
  for (const v of al) assert.ok(Math.abs(v + 0.5) < 1e-6, `aliased ${v}`);
  const aa3 = await gpuResize(p3, { B: 1, C: 1, inH: 6, inW: W3, outH: 2, outW: W3 / 3, kernel: BICUBIC_TORCH_AA });
  for (let o = 2; o < W3 / 3 - 2; o++)
    assert.ok(Math.abs(aa3[o]) < 1e-6 && Math.abs(aa3[W3 / 3 + o]) < 1e-6, `antialiased ${aa3[o]}`);
});

test('pixels -> tensor: 8-bit RGBA, gray -> RGB, 16-bit, batch 2, odd sizes', async () => {
  const ctx = await device();
  const rs = await resampler();
  const B = 2;
  const H = 3;
  const W = 5;
  const cases: { inC: number; map: number[]; bits: 8 | 16 }[] = [
    { inC: 4, map: [0, 1, 2], bits: 8 },
    { inC: 4, map: [3], bits: 8 },
    { inC: 1, map: [0, 0, 0], bits: 8 },
    { inC: 2, map: [0, 0, 0], bits: 16 },
    { inC: 3, map: [0, 1, 2], bits: 16 },
  ];
  for (const c of cases) {
    const n = B * H * W * c.inC;
    const max = c.bits === 8 ? 255 : 65535;
    const samples = Array.from({ length: n }, (_, i) => (i === 0 ? 0 : i === 1 ? max : (i * 7919) % (max + 1)));
    const pixels = ctx.upload(c.bits === 8 ? packBytes(Uint8Array.from(samples)) : packU16(Uint16Array.from(samples)));
    const total = B * c.map.length * H * W;
    const output = ctx.buffer((total + 3) * 4);
    ctx.write(output, new Float32Array(total + 3).fill(99));
    ctx.run([
      rs.toTensor({
        pixels,
        output,
        batch: B,
        height: H,
        width: W,
        inChannels: c.inC,
        channelMap: c.map,
        bits: c.bits,
        outOffset: 3,
      }),
    ]);
    const got = await ctx.read(output, (total + 3) * 4);
    const want = toTensorRef(samples, B, H, W, c.inC, c.map, c.bits);
    assert.equal(Array.from(got.subarray(0, 3)), [99, 99, 99], 'offset respected');
    assert.ok(maxDiff(got.subarray(3), want) < 1.2e-7, `${JSON.stringify(c)}: ${maxDiff(got.subarray(3), want)}`);
    if (c.map.length === 3 && c.inC !== 1 && c.inC !== 2) {
      assert.is(got[3], -1, '0 -> -1');
      assert.is(got[3 + H * W], 1, 'max -> 1');
    }
    pixels.destroy();
    output.destroy();
  }
});

test('tensor -> pixels: clamp, (x+1)/2*255, round half to even; RGB + separate alpha; 16-bit; round trip', async () => {
  const ctx = await device();
  const rs = await resampler();
  const B = 2;
  const H = 3;
  const W = 3;
  const HW = H * W;
  const rgb = rand(B * 3 * HW, 21).map((v) => v * 1.3); // some outside [-1, 1]
  // Exact ties: (x+1)/2*255 = k + 0.5 for x = (2k + 1)/255 - 1.
  rgb[0] = Math.fround(1 / 255 - 1); // 0.5 -> 0
  rgb[1] = Math.fround(3 / 255 - 1); // 1.5 -> 2
  rgb[2] = 1; // 1 -> 255
  const alpha = rand(B * HW, 22);
  const ta = ctx.upload(rgb);
  const tb = ctx.upload(alpha);
  for (const [map, bits] of [
    [[0, 1, 2], 8],
    [[0, 1, 2, 4], 8],
    [[1], 8],
    [[0, 1, 2, 4], 16],
  ] as [number[], 8 | 16][]) {
    const samples = B * HW * map.length;
    const bytes = Math.ceil((samples * bits) / 8 / 4) * 4;
    const pixels = ctx.buffer(bytes);
    ctx.run([
      rs.toPixels({
        input: ta,
        channels: 3,
        extra: map.includes(4) ? tb : undefined,
        extraChannels: 1,
        pixels,
        batch: B,
        height: H,
        width: W,
        channelMap: map,
        bits,
      }),
    ]);
    const words = await ctx.readU32(pixels, bytes);
    const got = bits === 8 ? unpackBytes(words, samples) : unpackU16(words, samples);
    const want = toPixelsRef(rgb, 3, alpha, 1, B, H, W, map, bits);
    assert.equal(Array.from(got), want, `map ${map} bits ${bits}`);
    pixels.destroy();
  }
  const ties = toPixelsRef(rgb, 3, null, 0, 1, 1, 1, [0, 1, 2]);
  assert.equal([ties[0]], [0]);
  assert.is(roundHalfEven(2.5), 2);
  assert.is(roundHalfEven(3.5), 4);
  // Every byte value survives pixels -> tensor -> pixels.
  const all = Uint8Array.from({ length: 256 * 3 }, (_, i) => i % 256);
  const px = ctx.upload(packBytes(all));
  const t = ctx.buffer(256 * 3 * 4);
  const px2 = ctx.buffer(256 * 3);
  ctx.run([
    rs.toTensor({ pixels: px, output: t, batch: 1, height: 16, width: 16, inChannels: 3 }),
    rs.toPixels({ input: t, channels: 3, pixels: px2, batch: 1, height: 16, width: 16 }),
  ]);
  assert.equal(Array.from(unpackBytes(await ctx.readU32(px2, 256 * 3), 256 * 3)), Array.from(all));
  for (const b of [ta, tb, px, t, px2]) b.destroy();
});

test('pixelLayout: gray+alpha in, RGB tensor + alpha tensor, gray+alpha out, through the GPU', async () => {
  const ctx = await device();
  const rs = await resampler();
  const L = pixelLayout(2);
  assert.equal(L, { rgb: [0, 0, 0], alpha: [1], output: [0, 4] });
  assert.equal(pixelLayout(4).output, [0, 1, 2, 4]);
  assert.throws(() => pixelLayout(5), /1 to 4 channels/);
  const H = 3;
  const W = 5;
  const samples = Uint8Array.from({ length: H * W * 2 }, (_, i) => (i * 41) % 256);
  const px = ctx.upload(packBytes(samples));
  const rgb = ctx.buffer(3 * H * W * 4);
  const alpha = ctx.buffer(H * W * 4);
  const out = ctx.buffer(H * W * 2);
  ctx.run([
    rs.toTensor({ pixels: px, output: rgb, batch: 1, height: H, width: W, inChannels: 2, channelMap: L.rgb }),
    rs.toTensor({ pixels: px, output: alpha, batch: 1, height: H, width: W, inChannels: 2, channelMap: L.alpha! }),
    rs.toPixels({
      input: rgb,
      channels: 3,
      extra: alpha,
      extraChannels: 1,
      pixels: out,
      batch: 1,
      height: H,
      width: W,
      channelMap: L.output,
    }),
  ]);
  const t = await ctx.read(rgb, 3 * H * W * 4);
  assert.equal(Array.from(t.subarray(0, H * W)), Array.from(t.subarray(2 * H * W)), 'gray repeated into R, G, B');
  assert.equal(Array.from(unpackBytes(await ctx.readU32(out, H * W * 2), H * W * 2)), Array.from(samples));
  for (const b of [px, rgb, alpha, out]) b.destroy();
});

test('shape and size errors are clear; large outputs use a 2D grid', async () => {
  const ctx = await device();
  const rs = await resampler();
  const small = ctx.buffer(64);
  const small2 = ctx.buffer(64);
  const base = { input: small, output: small2, batch: 1, channels: 1, kernel: BICUBIC_TORCH };
  assert.throws(() => rs.resize({ ...base, inH: 2, inW: 2, outH: 8, outW: 8 }), /output needs 256 bytes/);
  assert.throws(() => rs.resize({ ...base, inH: 0, inW: 2, outH: 2, outW: 2 }), /inH must be/);
  assert.throws(() => rs.downscale({ ...base, inH: 6, inW: 4, factor: 4 }), /not divisible/);
  assert.throws(
    () => rs.resize({ ...base, inH: 2, inW: 2, outH: 2, outW: 2, kernel: { method: 'nearest' as never, a: 0 } }),
    /kernel must be/,
  );
  assert.throws(
    () =>
      rs.toPixels({
        input: small,
        channels: 3,
        pixels: small,
        batch: 1,
        height: 2,
        width: 2,
        channelMap: [0, 1, 2, 4],
      }),
    /extra input/,
  );
  assert.throws(
    () => rs.toTensor({ pixels: small, output: small, batch: 1, height: 2, width: 2, inChannels: 3, channelMap: [3] }),
    /not a valid source/,
  );
  assert.throws(() => rs.resize({ ...base, output: small, inH: 2, inW: 2, outH: 2, outW: 2 }), /different buffers/);
  assert.equal(flatWorkgroups(1000), [4, 1]);
  const [x, y] = flatWorkgroups(256 * 70000);
  assert.ok(x <= 65535 && x * y * 256 >= 256 * 70000);
  // A resize big enough to need the 2D grid (x > 65535 groups): 1 x 4096 x 4100 output.
  const H = 1024;
  const W = 1025;
  const inp = ctx.upload(Float32Array.from({ length: H * W }, (_, i) => (i % 7) / 7));
  const outp = ctx.buffer(16 * H * W * 4);
  const d = rs.upscale({
    input: inp,
    output: outp,
    batch: 1,
    channels: 1,
    inH: H,
    inW: W,
    factor: 4,
    kernel: BICUBIC_TORCH,
  });
  assert.ok(d.workgroups[1]! > 1, 'uses a 2D grid');
  ctx.run([d]);
  const out = await ctx.read(outp, 16 * H * W * 4);
  // Spot-check the last rows (the part a 1D grid capped at 65535 groups would miss) against the reference.
  const rows = 8;
  const inTail = Float32Array.from({ length: 4 * W }, (_, i) => (((H - 4) * W + i) % 7) / 7);
  const refTail = resizeRef(inTail, 1, 4, W, 16, 4 * W, 'interp', -0.75);
  // Output rows 4H-8 .. 4H-1 sample input rows >= H-3, which the 4-row tail holds with the same bottom border.
  for (let r = 0; r < rows; r++) {
    for (let xx = 0; xx < 4 * W; xx += 97) {
      const g = out[(4 * H - rows + r) * 4 * W + xx];
      const w = refTail[(16 - rows + r) * 4 * W + xx];
      assert.ok(Math.abs(g - w) < 2e-6, `row ${4 * H - rows + r} col ${xx}: ${g} vs ${w}`);
    }
  }
  for (const b of [small, small2, inp, outp]) b.destroy();
});

test.after(releaseDevice);
test.run();
