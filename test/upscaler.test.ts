// createUpscaler: one upscaler over images of several sizes gives, image for image, what a fresh upscaleTensor gives
// (the cached samplers and the shared weights change nothing), uploads the model's parameters once, and takes the
// Node inputs (path, PNG/JPEG bytes, pixels) with pixels and PNG bytes out.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { imageToTensors, tensorsToImage } from '../engine/image.ts';
import { createUpscaler } from '../engine/node/api.ts';
import { decodePng, encodePng, type Image } from '../engine/node/png.ts';
import { upscaleTensor, type Tensor3 } from '../engine/upscale.ts';
import { createUpscalerCore } from '../engine/upscaler.ts';
import { device, rand, releaseDevice } from './helpers/device.ts';
import { FIXTURES, goldenModel } from './helpers/golden.ts';

const t = (h: number, w: number, seed: number): Tensor3 => ({
  channels: 3,
  height: h,
  width: w,
  data: rand(3 * h * w, seed).map((v) => 0.8 * v),
});

async function rejects(f: () => Promise<unknown>, msg: RegExp): Promise<void> {
  try {
    await f();
  } catch (e) {
    assert.match((e as Error).message, msg);
    return;
  }
  assert.unreachable(`expected an error matching ${msg}`);
}

function image(width: number, height: number, seed: number): Image {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.round(((Math.sin(i * 0.37 + seed) + 1) / 2) * 255);
  return { width, height, channels: 3, bitDepth: 8, data };
}

/** Count the U-Net parameter uploads: buffers labelled `<unet label>.params` (or `.params.<chunk>`). */
function countParamUploads(ctx: { device: GPUDevice }): { count: () => number; restore: () => void } {
  const dev = ctx.device;
  const orig = dev.createBuffer.bind(dev);
  let n = 0;
  dev.createBuffer = (d: GPUBufferDescriptor) => {
    if (/^(unet|upscaler)\.params(\.\d+)?$/.test(d.label ?? '')) n++;
    return orig(d);
  };
  return {
    count: () => n,
    restore: () => {
      dev.createBuffer = orig;
    },
  };
}

test('one upscaler over three images of two sizes: the same tensors as fresh upscaleTensor calls, weights uploaded once', async () => {
  const ctx = await device();
  const model = goldenModel('tiny');
  const inputs = [t(7, 9, 1), t(8, 8, 2), t(7, 9, 3)];
  const opts = { steps: 4, seed: 5 };
  const fresh: Tensor3[] = [];
  for (const x of inputs) fresh.push((await upscaleTensor(ctx, model, x, opts))[0]);
  const spy = countParamUploads(ctx);
  try {
    const up = createUpscalerCore(ctx, model, { steps: 4, cacheShapes: 2 });
    for (let i = 0; i < inputs.length; i++) {
      const [y] = await up.upscaleTensor(inputs[i], { seed: 5 });
      assert.equal([y.height, y.width], [inputs[i].height * 4, inputs[i].width * 4]);
      assert.equal(Array.from(y.data), Array.from(fresh[i].data), `image ${i}`);
    }
    // the same image again, from the cache: still identical
    const [again] = await up.upscaleTensor(inputs[0], { seed: 5 });
    assert.equal(Array.from(again.data), Array.from(fresh[0].data));
    assert.is(spy.count(), 1, 'the parameters are uploaded once for all images and sizes');
    up.dispose();
    await rejects(() => up.upscaleTensor(inputs[0]), /disposed/);
  } finally {
    spy.restore();
  }
});

test('a cache of one shape, tiles, a per-image step count, two samples and a multistep solver give what fresh calls give', async () => {
  const ctx = await device();
  const model = goldenModel('tiny');
  const up = createUpscalerCore(ctx, model, { steps: 3, cacheShapes: 1 });
  const a = t(8, 8, 4);
  const b = t(5, 6, 6);
  const cases: [Tensor3, Parameters<typeof upscaleTensor>[3]][] = [
    [a, { steps: 3, seed: 1 }],
    [b, { steps: 3, seed: 2, samples: 2 }],
    [a, { steps: 4, seed: 1, tile: 16, overlap: 8 }],
    [a, { steps: 4, seed: 1, tile: 16, overlap: 8 }],
    // a multistep solver's history buffers hold the last image's x0 predictions when its sampler is reused
    [b, { steps: 3, seed: 2, sampler: 'unipc' }],
    [a, { steps: 3, seed: 7, sampler: 'unipc' }],
    [a, { steps: 3, seed: 8, sampler: 'unipc' }],
  ];
  for (const [x, o] of cases) {
    const want = await upscaleTensor(ctx, model, x, o);
    const got = await up.upscaleTensor(x, o);
    assert.is(got.length, want.length);
    got.forEach((g, k) => {
      assert.equal(Array.from(g.data), Array.from(want[k].data), JSON.stringify(o));
    });
  }
  up.dispose();
});

test('Node createUpscaler: a path, PNG bytes and pixels in; pixels and PNG bytes out; bad pixels refused by name', async () => {
  const ctx = await device();
  const dir = mkdtempSync(join(tmpdir(), 'sr3-upscaler-'));
  const tiny = join(FIXTURES, 'golden', 'tiny');
  const model = goldenModel('tiny');
  const up = await createUpscaler({ model, device: ctx, steps: 3 });
  const img = image(6, 5, 1);
  const file = join(dir, 'in.png');
  writeFileSync(file, encodePng(img));
  const want = tensorsToImage(
    (await upscaleTensor(ctx, model, imageToTensors(img, 3).color, { steps: 3, seed: 9 }))[0],
    null,
    img,
  );
  for (const input of [file, new Uint8Array(readFileSync(file)), img]) {
    const r = await up.upscale(input, { seed: 9 });
    assert.equal([r.image.width, r.image.height, r.image.channels, r.scale], [24, 20, 3, 4]);
    assert.equal(Array.from(r.image.data), Array.from(want.data));
    const png = decodePng(r.png());
    assert.equal(Array.from(png.data), Array.from(want.data));
  }
  await rejects(
    () => up.upscale({ width: 4, height: 4, channels: 3, data: new Uint8Array(10) }),
    /data has 10 samples; 4x4x3 needs 48/,
  );
  await rejects(() => up.upscale(img, { steps: 1 }), /steps must be an integer from 2 to/);
  // the API refuses what the CLI refuses: eta Infinity used to sample to an all-black image
  await rejects(
    () => up.upscale(img, { sampler: 'ddim', eta: Number.POSITIVE_INFINITY }),
    /eta must be a number from 0 \(deterministic\) to 1 \(DDPM-like\), got Infinity/,
  );
  await rejects(() => up.upscale(img, { steps: 1e9 }), /steps must be an integer from 2 to 1000000, got 1000000000/);
  await rejects(() => up.upscale(join(dir, 'missing.png')), /no such file/);
  up.dispose();
  // the device was the caller's: still usable
  assert.ok(ctx.buffer(16, 'still-open'));
  // a model given as a reference checkpoint path
  const up2 = await createUpscaler({
    model: join(tiny, 'model_gen.pth'),
    config: join(tiny, 'config.json'),
    device: ctx,
    steps: 3,
    log: () => {},
  });
  const r2 = await up2.upscale(img, { seed: 9 });
  assert.equal(Array.from(r2.image.data), Array.from(want.data));
  up2.dispose();
});

test.after(releaseDevice);
test.run();
