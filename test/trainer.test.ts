// The Trainer (engine/trainer.ts) against the path `sr3 train` took before it existed: the same TrainGraph with the
// condition, blur, noise, clipping and EMA dispatches composed by hand and the batch drawn by hand, as
// engine/node/train.ts did. Every step's loss and learning rate, the parameters, Adam's moments and the EMA must be
// bit-identical, fresh and resumed. The crops themselves (flips and turns of the source pixels) are checked on the CPU.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { GpuContext } from '../engine/gpu.ts';
import type { PixelImage } from '../engine/image.ts';
import { reducePartials } from '../engine/kernels-backward.ts';
import { clipGradNorm, emaUpdate, warmupLr } from '../engine/optim.ts';
import { BICUBIC_TORCH, BICUBIC_TORCH_AA, Resampler } from '../engine/resample.ts';
import { GaussianRng } from '../engine/rng.ts';
import { makeSchedule, parseSchedule } from '../engine/schedule.ts';
import { gaussianBlur } from '../engine/ops/train-data.ts';
import { TrainGraph } from '../engine/train.ts';
import {
  type BlurSpec,
  type CropSource,
  mulberry32,
  photoCrops,
  randomCrop,
  Trainer,
  type TrainerState,
} from '../engine/trainer.ts';
import type { UNetWeights } from '../engine/unet.ts';
import { device, releaseDevice } from './helpers/device.ts';
import { goldenModel } from './helpers/golden.ts';

const B = 2;
const patch = 16;
const scale = 4;
const seed = 5;
const schedule = parseSchedule('linear:2000:1e-6:0.01');
const recipe = { lr: 1e-3, warmup: 2, clip: 1, ema: 0.9, blur: { p: 0.5, s0: 0.4, s1: 0.6, radius: 2 } as BlurSpec };

// two small photos of smooth colour fields (8-bit RGB and 16-bit gray: both conversions)
function photo(k: number, w: number, h: number, channels: 1 | 3, bitDepth: 8 | 16): PixelImage {
  const max = bitDepth === 16 ? 65535 : 255;
  const data = bitDepth === 16 ? new Uint16Array(w * h * channels) : new Uint8Array(w * h * channels);
  for (let i = 0; i < data.length; i++) data[i] = Math.round(max * (0.5 + 0.45 * Math.sin((i * (k + 2)) / 37)));
  return { width: w, height: h, channels, bitDepth, data };
}
const photos = [photo(0, 24, 20, 3, 8), photo(1, 20, 28, 1, 16)];

/** What engine/node/train.ts did before the Trainer: the graph, its prelude/preUpdate/postlude and the batch loop. */
async function oldPath(
  ctx: GpuContext,
  weights: UNetWeights,
  crops: CropSource,
  steps: number,
  resume?: TrainerState,
): Promise<{ log: { loss: number; lr: number }[]; state: TrainerState }> {
  const blur = recipe.blur;
  const tg = await TrainGraph.build(ctx, weights, {
    batch: B,
    height: patch,
    width: patch,
    loss: 'l1',
    reduction: 'sum',
    adam: { lr: recipe.lr },
    objective: 'diffusion',
    target: 'residual',
  });
  const rs = await Resampler.create(ctx);
  const lrBuf = ctx.buffer(B * 3 * (patch / scale) ** 2 * 4, 'train.lr');
  const rng = await GaussianRng.create(ctx);
  const noiseFill = rng.fill({ out: tg.noise, n: B * 3 * patch * patch, seed, sub: 7 });
  const lp = patch / scale;
  const sigmaBuf = ctx.buffer(Math.max(16, B * 4), 'train.blur_sigma');
  const lrBlur = ctx.buffer(B * 3 * lp * lp * 4, 'train.lr_blur');
  tg.prelude = [
    rs.downscale({
      input: tg.hr,
      output: lrBuf,
      batch: B,
      channels: 3,
      inH: patch,
      inW: patch,
      factor: scale,
      kernel: BICUBIC_TORCH_AA,
    }),
    await gaussianBlur(
      ctx,
      { B, C: 3, H: lp, W: lp, radius: blur.radius },
      { sigma: sigmaBuf, input: lrBuf, output: lrBlur },
    ),
    rs.upscale({
      input: lrBlur,
      output: tg.cond,
      batch: B,
      channels: 3,
      inH: lp,
      inW: lp,
      factor: scale,
      kernel: BICUBIC_TORCH,
      clamp: true,
    }),
    noiseFill.dispatch,
  ];
  const partial = ctx.buffer(reducePartials(tg.nParams) * 4, 'train.clip_partial');
  const norm = ctx.buffer(16, 'train.grad_norm');
  tg.preUpdate = await clipGradNorm(ctx, { n: tg.nParams, maxNorm: recipe.clip }, { grads: tg.grads, partial, norm });
  const emaBuf = ctx.buffer(tg.nParams * 4, 'train.ema');
  ctx.write(emaBuf, resume?.ema ?? (await tg.readParams()));
  tg.postlude = [await emaUpdate(ctx, { n: tg.nParams, decay: recipe.ema }, { params: tg.params, ema: emaBuf })];
  if (resume) {
    ctx.write(tg.adamM!, resume.adamM!);
    ctx.write(tg.adamV!, resume.adamV!);
    tg.steps = resume.adamStep!;
    ctx.write(tg.params, resume.params);
  }
  const stepsDone = resume?.step ?? 0;
  const tables = makeSchedule(schedule);
  const T = tables.betas.length;
  const rnd = mulberry32(seed + stepsDone * 7919);
  const hr = new Float32Array(B * 3 * patch * patch);
  const sg = new Float32Array(B);
  const sigma = new Float32Array(B);
  const prepare = () => {
    for (let b = 0; b < B; b++) {
      crops(rnd, hr, b * 3 * patch * patch);
      const t = 1 + Math.floor(rnd() * T);
      const a = tables.sqrtGammaPrev[t - 1];
      const c = tables.sqrtGammaPrev[t];
      sg[b] = c + rnd() * (a - c);
      sigma[b] = rnd() < blur.p ? blur.s0 + rnd() * (blur.s1 - blur.s0) : 0;
    }
  };
  const log: { loss: number; lr: number }[] = [];
  prepare();
  for (let step = 0; step < steps; step++) {
    ctx.write(tg.hr, hr);
    ctx.write(tg.sqrtGamma, sg);
    ctx.write(sigmaBuf, sigma);
    noiseFill.setStream(stepsDone + step);
    const lrNow = warmupLr(recipe.lr, tg.steps + 1, recipe.warmup);
    tg.submit(true, lrNow);
    prepare();
    log.push({ loss: (await ctx.read(tg.lossValue, 4))[0], lr: lrNow });
  }
  const bytes = tg.nParams * 4;
  const state: TrainerState = {
    params: await tg.readParams(),
    adamM: await ctx.read(tg.adamM!, bytes),
    adamV: await ctx.read(tg.adamV!, bytes),
    ema: await ctx.read(emaBuf, bytes),
    step: stepsDone + steps,
    adamStep: tg.steps,
  };
  for (const b of [lrBuf, sigmaBuf, lrBlur, partial, norm, emaBuf]) b.destroy();
  tg.destroy();
  return { log, state };
}

async function viaTrainer(
  ctx: GpuContext,
  weights: UNetWeights,
  crops: CropSource,
  steps: number,
  resume?: TrainerState,
): Promise<{ log: { loss: number; lr: number }[]; state: TrainerState; model: Map<string, Float32Array> }> {
  const trainer = await Trainer.create(ctx, weights, {
    batch: B,
    patch,
    scale,
    schedule,
    target: 'residual',
    seed,
    crops,
    resume,
    ...recipe,
  });
  const log: { loss: number; lr: number }[] = [];
  for (let i = 0; i < steps; i++) log.push(await trainer.step());
  const out = { log, state: await trainer.state(), model: await trainer.modelParams() };
  trainer.destroy();
  return out;
}

/** The first index where two arrays' bits differ, or -1. */
function firstDiff(a: Float32Array | undefined, b: Float32Array | undefined): number {
  if (!a || !b) return a === b ? -1 : 0;
  if (a.length !== b.length) return 0;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

function assertSameState(got: TrainerState, want: TrainerState, what: string): void {
  for (const k of ['params', 'adamM', 'adamV', 'ema'] as const)
    assert.is(firstDiff(got[k], want[k]), -1, `${what}: ${k} differs`);
  assert.is(got.step, want.step, `${what}: step`);
  assert.is(got.adamStep, want.adamStep, `${what}: Adam's step`);
}

test('Trainer: three steps (residual, blur, clip, EMA, warm-up) bit-identical to the hand-composed path; then resumed', async () => {
  const ctx = await device();
  const weights = goldenModel('tiny');
  const crops = photoCrops(photos, patch);
  const old = await oldPath(ctx, weights, crops, 3);
  const neu = await viaTrainer(ctx, weights, crops, 3);
  console.log(
    `    losses ${neu.log.map((l) => l.loss.toFixed(4)).join(', ')}; lr ${neu.log.map((l) => l.lr).join(', ')}`,
  );
  assert.equal(neu.log, old.log);
  assert.ok(
    neu.log.every((l) => Number.isFinite(l.loss)),
    'finite losses',
  );
  assertSameState(neu.state, old.state, 'fresh');
  // the model a checkpoint holds is the EMA, by name (views of one flat read)
  const named = [...neu.model.values()];
  assert.is(
    named.reduce((s, v) => s + v.length, 0),
    neu.state.params.length,
  );
  assert.is(firstDiff(new Float32Array(named[0].buffer, 0, neu.state.params.length), old.state.ema), -1);

  // resumed from the state at step 3 (moments, EMA, Adam's count): two more steps, again bit-identical
  const old2 = await oldPath(ctx, weights, crops, 2, old.state);
  const neu2 = await viaTrainer(ctx, weights, crops, 2, neu.state);
  assert.equal(neu2.log, old2.log);
  assertSameState(neu2.state, old2.state, 'resumed');
  assert.is(neu2.state.step, 5);
});

test('Trainer: a resumed state reads back unchanged; moments dropped on request; mismatched state refused', async () => {
  const ctx = await device();
  const weights = goldenModel('tiny');
  const crops = photoCrops(photos, patch);
  const first = await viaTrainer(ctx, weights, crops, 1);
  const t = await Trainer.create(ctx, weights, {
    batch: B,
    patch,
    scale,
    schedule,
    crops,
    ...recipe,
    resume: first.state,
  });
  assertSameState(await t.state(), first.state, 'round trip');
  const slim = await t.state({ moments: false });
  assert.is(slim.adamM, undefined);
  assert.is(slim.adamV, undefined);
  assert.ok(slim.ema);
  t.destroy();
  const cut = { ...first.state, adamV: first.state.adamV!.subarray(1) };
  try {
    await Trainer.create(ctx, weights, { batch: B, patch, scale, schedule, crops, ...recipe, resume: cut });
    assert.unreachable('a short moment was accepted');
  } catch (e) {
    assert.match(String(e), /moments do not match/);
  }
});

test('randomCrop: each crop is a flip and quarter turn of a window of the photo, mapped to [-1, 1]', () => {
  // a 6x5 RGB photo whose every sample is distinct, so a crop's values say where they came from
  const w = 6;
  const h = 5;
  const img: PixelImage = { width: w, height: h, channels: 3, bitDepth: 8, data: new Uint8Array(w * h * 3) };
  for (let i = 0; i < img.data.length; i++) img.data[i] = i;
  const size = 3;
  const rnd = mulberry32(11);
  const seen = new Set<string>();
  for (let k = 0; k < 40; k++) {
    const dst = new Float32Array(3 * size * size);
    randomCrop(img, size, rnd, dst, 0);
    // back to (x, y) in the photo; the window is size x size, axis-aligned, and each channel is the same pixel's
    const px = (c: number, y: number, x: number) => {
      const s = Math.round(((dst[(c * size + y) * size + x] + 1) / 2) * 255);
      return { x: Math.floor(s / 3) % w, y: Math.floor(s / 3 / w), c: s % 3 };
    };
    const corners = [px(0, 0, 0), px(0, 0, size - 1), px(0, size - 1, 0), px(0, size - 1, size - 1)];
    const xs = corners.map((p) => p.x);
    const ys = corners.map((p) => p.y);
    assert.is(Math.max(...xs) - Math.min(...xs), size - 1);
    assert.is(Math.max(...ys) - Math.min(...ys), size - 1);
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          const p = px(c, y, x);
          assert.is(p.c, c);
          // neighbours in the crop are neighbours in the photo (a rigid motion of the grid)
          if (x > 0) assert.is(Math.abs(p.x - px(c, y, x - 1).x) + Math.abs(p.y - px(c, y, x - 1).y), 1);
        }
    seen.add(JSON.stringify(corners.map((p) => [p.x - Math.min(...xs), p.y - Math.min(...ys)])));
  }
  assert.is(seen.size, 8, 'all eight flips and turns occur');
  assert.throws(() => photoCrops([img], 8), /smaller than the 8px patch/);
});

test.after(releaseDevice);
test.run();
