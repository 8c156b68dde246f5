// The training recipe's pieces: the residual target (HR - condition) learnt by TrainGraph and added back by every
// upscale path, the Gaussian-blur augmentation of the condition against a float64 TypeScript reference, and the
// model metadata that says which target a model has.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gaussianBlur, gaussianBlurRef } from '../engine/ops/train-data.ts';
import { TrainGraph } from '../engine/train.ts';
import { BICUBIC_TORCH_AA, Resampler } from '../engine/resample.ts';
import { bicubicUpscale, conditionRecipe, modelTarget, upscaleTensor, type Tensor3 } from '../engine/upscale.ts';
import { parseBlur } from '../engine/node/train.ts';
import { encodeModel, loadModel, type SR3Model } from '../weights-format/index.ts';
import { device, rand, relErr, releaseDevice } from './helpers/device.ts';
import { goldenModel, goldenTensors } from './helpers/golden.ts';

const withTarget = (m: SR3Model, target: string): SR3Model => ({
  ...m,
  metadata: { ...m.metadata, training: JSON.stringify({ target }) },
});

test('the residual target: the graph on (HR, cond) is the plain graph on (HR - cond, cond): loss and every gradient', async () => {
  const ctx = await device();
  const g = goldenTensors('tiny', 'train.safetensors');
  const [B, , H, W] = g.shape('hr');
  const hr = g.get('hr');
  const cond = g.get('sr');
  const batch = { hr, cond, sqrtGamma: g.get('sqrt_gamma'), noise: g.get('noise') };
  const res = await TrainGraph.build(ctx, goldenModel('tiny'), {
    batch: B,
    height: H,
    width: W,
    loss: 'l2',
    target: 'residual',
  });
  res.setBatch(batch);
  const lossRes = await res.run();
  const y0 = await ctx.read(res.y0, hr.length * 4);
  const diff = hr.map((v, i) => v - cond[i]);
  assert.ok(relErr(y0, diff) <= 1e-7, 'y0 = hr - cond on the GPU');
  const gradsRes = await res.readGrads();
  res.destroy();
  const plain = await TrainGraph.build(ctx, goldenModel('tiny'), { batch: B, height: H, width: W, loss: 'l2' });
  plain.setBatch({ ...batch, hr: diff });
  const lossPlain = await plain.run();
  const e = relErr(gradsRes, await plain.readGrads());
  plain.destroy();
  console.log(
    `    residual loss ${lossRes.toFixed(4)} vs plain on HR - cond ${lossPlain.toFixed(4)}; gradient difference ${e.toExponential(2)}`,
  );
  assert.ok(Math.abs(lossRes - lossPlain) <= 1e-5 * Math.max(1, Math.abs(lossPlain)));
  assert.ok(e <= 1e-6, `gradients differ by ${e}`);
});

test('the target is read from the model metadata, written by encodeModel; unknown targets are refused', () => {
  const m = goldenModel('tiny');
  assert.is(modelTarget(m), 'hr', 'reference checkpoints keep the plain target');
  const bytes = encodeModel(m.config, (n) => m.param(n), {
    schedule: m.schedule,
    extra: { objective: 'diffusion', target: 'residual' },
  });
  assert.is(modelTarget(loadModel(bytes)), 'residual');
  assert.throws(() => modelTarget(withTarget(m, 'velocity')), /unknown target 'velocity'/);
});

const lr: Tensor3 = { channels: 3, height: 6, width: 8, data: rand(3 * 6 * 8, 11).map((v) => 0.7 * v) };

test('upscaling with a residual model adds the condition back: whole image, tiles and the regression baseline', async () => {
  const ctx = await device();
  const m = goldenModel('tiny');
  const { scale, up } = conditionRecipe(m);
  const cond = await bicubicUpscale(ctx, lr, scale, up, true);
  const check = async (what: string, mk: (t: string) => SR3Model, opts: Parameters<typeof upscaleTensor>[3]) => {
    const [plain] = await upscaleTensor(ctx, mk('hr'), lr, opts);
    const [res] = await upscaleTensor(ctx, mk('residual'), lr, opts);
    const want = plain.data.map((v, i) => v + cond.data[i]);
    const e = relErr(res.data, want);
    console.log(`    ${what}: residual output vs plain output + condition ${e.toExponential(2)}`);
    assert.ok(e <= 1e-6, what);
  };
  const steps = { schedule: 'linear:3:1e-4:0.3', seed: 5, consistency: false };
  await check('ddim, whole image', (t) => withTarget(m, t), { ...steps, sampler: 'ddim' });
  await check('reference sampler, 16px tiles', (t) => withTarget(m, t), { ...steps, tile: 16, overlap: 8 });
  const regression = (t: string): SR3Model => ({
    ...m,
    metadata: { ...m.metadata, training: JSON.stringify({ objective: 'regression', target: t }) },
  });
  await check('regression baseline', regression, steps);
});

test('consistency with the residual target keeps the input: the output downscaled is close to the condition downscaled', async () => {
  const ctx = await device();
  const m = withTarget(goldenModel('tiny'), 'residual');
  const opts = { schedule: 'linear:6:1e-4:0.3', seed: 1 };
  const [on] = await upscaleTensor(ctx, m, lr, { ...opts, consistency: true });
  const [off] = await upscaleTensor(ctx, m, lr, { ...opts, consistency: false });
  const rs = await Resampler.create(ctx);
  const down = async (t: Tensor3) => {
    const inp = ctx.upload(t.data);
    const out = ctx.buffer((t.data.length / 16) * 4);
    ctx.run([
      rs.downscale({
        input: inp,
        output: out,
        batch: 1,
        channels: 3,
        inH: t.height,
        inW: t.width,
        factor: 4,
        kernel: BICUBIC_TORCH_AA,
      }),
    ]);
    return ctx.read(out, (t.data.length / 16) * 4);
  };
  const mse = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0) / a.length;
  // the projection's target, as for the plain target (test/upscale.test.ts): the condition's low frequencies
  const { scale, up } = conditionRecipe(m);
  const ref = await down(await bicubicUpscale(ctx, lr, scale, up, true));
  const eOn = mse(await down(on), ref);
  const eOff = mse(await down(off), ref);
  console.log(
    `    LR-consistency MSE with the residual target: ${eOn.toExponential(2)} with the projection, ${eOff.toExponential(2)} without`,
  );
  assert.ok(eOn * 20 < eOff && eOn < 1e-3, `${eOn} vs ${eOff}`);
});

test('the blur augmentation on the GPU matches the float64 reference (per-element sigma, 0 = unchanged)', async () => {
  const ctx = await device();
  for (const [B, C, H, W, radius, sigma] of [
    [3, 3, 9, 13, 2, [0, 0.5, 0.6]],
    [2, 1, 5, 4, 4, [1.3, 0.25]],
  ] as [number, number, number, number, number, number[]][]) {
    const x = rand(B * C * H * W, H + W);
    const sb = ctx.upload(new Float32Array([...sigma, 0, 0, 0, 0]));
    const inp = ctx.upload(x);
    const out = ctx.buffer(x.length * 4);
    ctx.run([await gaussianBlur(ctx, { B, C, H, W, radius }, { sigma: sb, input: inp, output: out })]);
    const got = await ctx.read(out, x.length * 4);
    const want = gaussianBlurRef(x, sigma, B, C, H, W, radius);
    let worst = 0;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
    console.log(
      `    blur ${B}x${C}x${H}x${W} radius ${radius}, sigma ${sigma.join('/')}: max |gpu - ref| ${worst.toExponential(2)}`,
    );
    assert.ok(worst <= 2e-6);
    const per = C * H * W;
    if (sigma[0] === 0)
      assert.equal(Array.from(got.subarray(0, per)), Array.from(x.subarray(0, per)), 'sigma 0 copies');
    for (const b of [sb, inp, out]) b.destroy();
  }
  // the reference itself: a constant image stays constant; a centred impulse spreads into the normalised Gaussian
  const imp = new Float32Array(25);
  imp[12] = 1;
  const r = gaussianBlurRef(imp, [0.8], 1, 1, 5, 5, 2);
  const w = (d: number) => Math.exp(-d / (2 * 0.64));
  let norm = 0;
  for (let dy = -2; dy <= 2; dy++) for (let dx = -2; dx <= 2; dx++) norm += w(dx * dx + dy * dy);
  assert.ok(
    Math.abs(r[12] - 1 / norm) < 1e-12 && Math.abs(r[13] - w(1) / norm) < 1e-12 && Math.abs(r[0] - w(8) / norm) < 1e-12,
  );
  assert.ok(
    gaussianBlurRef(new Float32Array(20).fill(0.3), [1], 1, 1, 4, 5, 3).every(
      (v) => Math.abs(v - Math.fround(0.3)) < 1e-12,
    ),
  );
});

test('--blur is parsed and checked', () => {
  assert.equal(parseBlur('0.5:0.4:0.6'), { p: 0.5, s0: 0.4, s1: 0.6, radius: 2 });
  assert.is(parseBlur(undefined), null);
  assert.throws(() => parseBlur('1.5:0.4:0.6'), /p:s0:s1/);
  assert.throws(() => parseBlur('0.5:0.6:0.4'), /p:s0:s1/);
});

test.after(releaseDevice);
test.run();
