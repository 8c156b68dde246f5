// Tiled upscaling (overlapping tiles sampled jointly): the layout, agreement with a one-pass result where both fit,
// and no seam where tiles meet.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { GpuContext } from '../engine/gpu.ts';
import { opInputs, opOutput, planFlops, planMemory, planUNet } from '../engine/unet-plan.ts';
import { defaultOverlap, fitTile, tileFor, tileOrigins, upscaleTensor, type Tensor3 } from '../engine/upscale.ts';
import { unetFlops } from '../bench/unet.ts';
import { openDevice } from '../engine/node/device.ts';
import { device, releaseDevice } from './helpers/device.ts';
import { goldenModel } from './helpers/golden.ts';

test('tile origins cover the side with equal, aligned, overlapping tiles', () => {
  assert.equal(tileOrigins(64, 64, 8, 4), [0]);
  const o = tileOrigins(100, 32, 8, 4);
  assert.is(o[0], 0);
  assert.is(o[o.length - 1], 100 - 32);
  for (const x of o) assert.is(x % 4, 0);
  for (let i = 1; i < o.length; i++) assert.ok(o[i - 1] + 32 - o[i] >= 8, `overlap at ${i}: ${o}`);
});

test("a tile's work: the plan's FLOPs match the bench's count of the same U-Net", () => {
  const cfg = goldenModel('tiny').config;
  // at 32 attention is 2% of the work, at 256 half of it: both the linear and the quadratic part are checked
  for (const s of [32, 256]) {
    const f = planFlops(planUNet(cfg, 1, s, s, true));
    const bench = unetFlops(cfg, 1, s, s); // counted from the config, not the plan; it adds the small noise MLP
    assert.ok(Math.abs(f.conv + f.attention - bench) / bench < 1e-3, `${s}: ${f.conv + f.attention} vs ${bench}`);
  }
});

test('the memory plan tiling asks: tensors sharing a buffer are never alive at once, and each buffer holds its tensors', () => {
  const plan = planUNet(goldenModel('tiny').config, 2, 64, 64, true);
  const mem = planMemory(plan);
  // each tensor's life, from the op that writes it (-1: an input) to the last op that reads it (the output: the end)
  const life = new Map(plan.tensors.map((t) => [t, [-1, -1]]));
  plan.ops.forEach((op, i) => {
    const o = opOutput(op);
    if (o) life.get(o)![0] = i;
    for (const t of opInputs(op)) life.get(t)![1] = i;
  });
  life.get(plan.output)![1] = plan.ops.length;
  const byBuffer = new Map<number, [number, number][]>();
  for (const [t, b] of mem.of) {
    assert.ok(mem.buffers[b] >= t.bytes, `${t.name}: ${t.bytes} bytes in a buffer of ${mem.buffers[b]}`);
    byBuffer.set(b, [...(byBuffer.get(b) ?? []), life.get(t)! as [number, number]]);
  }
  for (const lives of byBuffer.values()) {
    lives.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < lives.length; i++) assert.ok(lives[i][0] > lives[i - 1][1], `overlap: ${lives}`);
  }
  assert.is(mem.of.size, plan.tensors.length);
  assert.is(
    mem.bytes,
    mem.buffers.reduce((a, b) => a + b, 0),
  );
  assert.ok(mem.bytes < mem.unshared / 2, `${mem.bytes} of ${mem.unshared}`);
});

test('tiles are sized by the work of attention, not only by what fits the device', () => {
  // tileFor asks the device only for its limits and whether its paths are the software ones
  const soft = { limits: { maxStorageBufferBindingSize: 128 * 2 ** 20 }, options: { paths: 'software' } } as GpuContext;
  const model = goldenModel('tiny'); // attends at a quarter of the resolution
  const share = (t: number) => {
    const f = planFlops(planUNet(model.config, 1, t, t, true));
    return f.attention / f.conv;
  };
  // small images: one pass
  assert.is(tileFor(soft, model, 1, 128, 128, 4), 128);
  // 512x512 fits the device in one pass, but its attention is 4 times its convolutions: tiles of 120, the largest
  // whose attention stays within a quarter of the convolutions', do a third of the work with their overlap
  assert.is(fitTile(soft, model, 1, 512, 512, 4), 512);
  assert.ok(share(512) > 4, `${share(512)}`);
  assert.is(tileFor(soft, model, 1, 512, 512, 4), 120);
  assert.ok(share(120) <= 0.25 && share(124) > 0.25, `${share(120)} ${share(124)}`);
  // 4096x4096 does not fit in one pass: the largest tile that fits is 836, but 120 is chosen all the same
  assert.is(fitTile(soft, model, 1, 4096, 4096, 4), 836);
  assert.is(tileFor(soft, model, 1, 4096, 4096, 4), 120);
  // the bundled model (models/natural4x.safetensors) attends at an eighth of the resolution: up to the largest tile
  // that fits, its attention stays within the share, and the choice is what fits
  const cfg = { ...model.config, inner_channel: 32, channel_mults: [1, 2, 4, 4], res_blocks: 2, norm_groups: 32 };
  const natural = { ...model, config: { ...cfg, attn_levels: [3] } };
  assert.is(tileFor(soft, natural, 1, 512, 512, 8), 512);
  assert.is(tileFor(soft, natural, 1, 4096, 4096, 8), fitTile(soft, natural, 1, 4096, 4096, 8));
});

// a smooth input with some structure, 16x16 -> 64x64
const lr: Tensor3 = {
  channels: 3,
  height: 16,
  width: 16,
  data: Float32Array.from(
    { length: 3 * 256 },
    (_, i) => 0.6 * Math.sin((i % 16) / 3 + Math.floor(i / 16) / 5 + Math.floor(i / 256)),
  ),
};
const meanAbs = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + Math.abs(v - b[i]), 0) / a.length;

test('tiles agree with one pass as closely as two seeds of one pass agree, and leave no seam', async () => {
  const ctx = await device();
  const model = goldenModel('tiny');
  const o = { steps: 4, seed: 2 };
  const [one] = await upscaleTensor(ctx, model, lr, o);
  const [other] = await upscaleTensor(ctx, model, lr, { ...o, seed: 3 });
  const [tiled] = await upscaleTensor(ctx, model, lr, { ...o, tile: 32, overlap: 8 });
  assert.equal([tiled.height, tiled.width], [64, 64]);
  const dTiled = meanAbs(tiled.data, one.data);
  const dSeeds = meanAbs(other.data, one.data);
  console.log(`    mean |tiled - one pass| ${dTiled.toFixed(4)}, mean |seed 3 - seed 2| ${dSeeds.toFixed(4)}`);
  assert.ok(dTiled <= 1.5 * dSeeds, `tiling moved the result more than a new seed: ${dTiled} vs ${dSeeds}`);
  // seams: the jump between neighbouring columns (rows) where tiles meet is like anywhere else
  const W = 64;
  const jump = (x: number, vertical: boolean) => {
    let s = 0;
    for (let c = 0; c < 3; c++)
      for (let k = 0; k < W; k++) {
        const a = vertical ? tiled.data[(c * W + k) * W + x] : tiled.data[(c * W + x) * W + k];
        const b = vertical ? tiled.data[(c * W + k) * W + x + 1] : tiled.data[(c * W + x + 1) * W + k];
        s += Math.abs(a - b);
      }
    return s / (3 * W);
  };
  const all: number[] = [];
  for (let x = 0; x < W - 1; x++) all.push(jump(x, true), jump(x, false));
  const typical = all.reduce((s, v) => s + v, 0) / all.length;
  // every place a tile starts or ends inside the image
  const origins = tileOrigins(64, 32, 8, 4);
  assert.ok(origins.length > 1);
  const edges = [...new Set(origins.flatMap((x) => [x - 1, x + 31]).filter((x) => x >= 0 && x < W - 1))];
  for (const edge of edges) {
    for (const v of [true, false]) {
      const j = jump(edge, v);
      assert.ok(j <= 2 * typical, `seam at ${v ? 'column' : 'row'} ${edge}: jump ${j} vs typical ${typical}`);
    }
  }
});

test('a tile smaller than the model allows is refused', async () => {
  const ctx = await device();
  try {
    await upscaleTensor(ctx, goldenModel('tiny'), lr, { steps: 2, tile: 2 });
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /smaller than this model's multiple of 4/);
  }
});

test('a canvas larger than one storage binding is tiled from host memory and matches the GPU canvas', async () => {
  // a 256 KiB binding limit: the 160x160 canvas (300 KiB) used to fail with "tiles.cond: needs a ... storage binding"
  const limit = 256 * 1024;
  const low = await openDevice({ lowerLimits: { maxStorageBufferBindingSize: limit } });
  try {
    assert.is(low.limits.maxStorageBufferBindingSize, limit);
    const model = goldenModel('tiny');
    const big: Tensor3 = {
      channels: 3,
      height: 40,
      width: 40,
      data: Float32Array.from(
        { length: 3 * 1600 },
        (_, i) => 0.6 * Math.sin((i % 40) / 5 + Math.floor(i / 40) / 7 + Math.floor(i / 1600)),
      ),
    };
    assert.ok(3 * 160 * 160 * 4 > limit);
    const tile = tileFor(low, model, 1, 160, 160, 4);
    assert.ok(tile < 160, `tile ${tile}`);
    const o = { steps: 2, seed: 7 };
    // both tilings report every tile of every step, in order
    const tiles = tileOrigins(160, tile, defaultOverlap(tile, tile, 4), 4).length ** 2;
    const expected = Array.from({ length: 2 * tiles }, (_, i) => [i + 1, 2 * tiles]);
    const ticks: number[][] = [];
    const [staged] = await upscaleTensor(low, model, big, { ...o, onTile: (d, t) => ticks.push([d, t]) });
    assert.equal(ticks, expected);
    // the same tiles on the normal device, whose canvas is one GPU buffer
    ticks.length = 0;
    const [gpu] = await upscaleTensor(await device(), model, big, { ...o, tile, onTile: (d, t) => ticks.push([d, t]) });
    assert.equal(ticks, expected);
    assert.equal([staged.height, staged.width], [160, 160]);
    const worst = (a: Tensor3, b: Tensor3) => a.data.reduce((m, v, i) => Math.max(m, Math.abs(v - b.data[i])), 0);
    console.log(`    tile ${tile}: max |host-staged - GPU canvas| ${worst(staged, gpu).toExponential(2)}`);
    assert.ok(worst(staged, gpu) <= 1e-4, `${worst(staged, gpu)}`);
    // a residual-target model: the condition is added back at the end, from each tile's own LR window
    const residual = { ...model, metadata: { ...model.metadata, training: JSON.stringify({ target: 'residual' }) } };
    const [stagedR] = await upscaleTensor(low, residual, big, o);
    const [gpuR] = await upscaleTensor(await device(), residual, big, { ...o, tile });
    console.log(`    residual target: max |host-staged - GPU canvas| ${worst(stagedR, gpuR).toExponential(2)}`);
    assert.ok(worst(stagedR, gpuR) <= 1e-4, `${worst(stagedR, gpuR)}`);
    assert.ok(worst(stagedR, staged) > 0.01, 'the residual target changed nothing');
  } finally {
    low.destroy();
  }
});

test.after(releaseDevice);
test.run();
