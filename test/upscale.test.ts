// Upscaling end to end on the golden tiny model: sizes (padding and crop back), reproducibility, several samples,
// and the consistency projection keeping the input's low frequencies.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BICUBIC_TORCH_AA, Resampler } from '../engine/resample.ts';
import { upscaleTensor, type Tensor3 } from '../engine/upscale.ts';
import { device, rand, releaseDevice } from './helpers/device.ts';
import { goldenModel } from './helpers/golden.ts';

const lr: Tensor3 = { channels: 3, height: 7, width: 9, data: rand(3 * 7 * 9, 3).map((v) => 0.8 * v) };

async function downscale4(img: Tensor3): Promise<Float32Array> {
  const ctx = await device();
  const rs = await Resampler.create(ctx);
  const inp = ctx.upload(img.data);
  const out = ctx.buffer((img.data.length / 16) * 4);
  ctx.run([
    rs.downscale({
      input: inp,
      output: out,
      batch: 1,
      channels: 3,
      inH: img.height,
      inW: img.width,
      factor: 4,
      kernel: BICUBIC_TORCH_AA,
    }),
  ]);
  return ctx.read(out, (img.data.length / 16) * 4);
}

const mse = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0) / a.length;

test('an odd-sized image comes back 4x larger, the same for the same seed, different for another seed', async () => {
  const ctx = await device();
  const model = goldenModel('tiny');
  const [a] = await upscaleTensor(ctx, model, lr, { steps: 4, seed: 7 });
  const [b] = await upscaleTensor(ctx, model, lr, { steps: 4, seed: 7 });
  const [c] = await upscaleTensor(ctx, model, lr, { steps: 4, seed: 8 });
  assert.equal([a.channels, a.height, a.width], [3, 28, 36]);
  assert.equal(Array.from(a.data), Array.from(b.data));
  assert.ok(mse(a.data, c.data) > 1e-3, 'another seed gives another image');
  assert.ok(a.data.every(Number.isFinite));
});

test('several samples per image are different images', async () => {
  const ctx = await device();
  const out = await upscaleTensor(ctx, goldenModel('tiny'), lr, { steps: 4, seed: 3, samples: 2 });
  assert.is(out.length, 2);
  assert.ok(mse(out[0].data, out[1].data) > 1e-3);
});

test('consistency keeps the input: the output downscaled is much closer to the input with it than without', async () => {
  const ctx = await device();
  const model = goldenModel('tiny');
  // a size that needs no padding, so the whole output is constrained
  const img: Tensor3 = { channels: 3, height: 8, width: 8, data: rand(3 * 64, 9).map((v) => 0.7 * v) };
  const [withC] = await upscaleTensor(ctx, model, img, { steps: 6, seed: 1, consistency: true });
  const [without] = await upscaleTensor(ctx, model, img, { steps: 6, seed: 1, consistency: false });
  const ref = await downscale4({ channels: 3, height: 32, width: 32, data: await upscaleCondition(img) });
  const eWith = mse(await downscale4(withC), ref);
  const eWithout = mse(await downscale4(without), ref);
  console.log(
    `    LR-consistency MSE: ${eWith.toExponential(2)} with the projection, ${eWithout.toExponential(2)} without`,
  );
  assert.ok(eWith * 20 < eWithout, `consistency error with ${eWith}, without ${eWithout}`);
  assert.ok(eWith < 1e-3, `consistency error with projection ${eWith}`);
});

/** The condition: the model's bicubic upscale of the input (what the projection pins the low frequencies to). */
async function upscaleCondition(img: Tensor3): Promise<Float32Array> {
  const ctx = await device();
  const rs = await Resampler.create(ctx);
  const inp = ctx.upload(img.data);
  const out = ctx.buffer(img.data.length * 16 * 4);
  ctx.run([
    rs.upscale({
      input: inp,
      output: out,
      batch: 1,
      channels: 3,
      inH: img.height,
      inW: img.width,
      factor: 4,
      kernel: { method: 'interp', a: -0.75 },
      clamp: true,
    }),
  ]);
  return ctx.read(out, img.data.length * 16 * 4);
}

test('bad requests are refused with a message', async () => {
  const ctx = await device();
  const model = goldenModel('tiny');
  try {
    await upscaleTensor(ctx, model, { channels: 1, height: 4, width: 4, data: new Float32Array(16) });
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /makes 3-channel images; the input has 1/);
  }
  try {
    await upscaleTensor(ctx, model, lr, { steps: 1 });
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /steps must be an integer from 2 to/);
  }
});

test.after(releaseDevice);
test.run();
