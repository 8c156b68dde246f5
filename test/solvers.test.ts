// The few-step solvers (DPM-Solver++(2M), UniPC-2 with B(h) = e^h - 1 and B(h) = h) against float64 references of
// their papers' reference implementations (test/reference/solvers-ref.ts): the coefficient table replayed in float64
// over whole trajectories of a synthetic model, the GPU sampler over whole trajectories of the golden tiny U-Net
// (the reference evaluating the float64 TypeScript U-Net), and upscaling with them (consistency, tiles).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ROW, Sampler, stepRows, type SamplerKind } from '../engine/sampler.ts';
import { makeSchedule, type ScheduleTables } from '../engine/schedule.ts';
import { BICUBIC_TORCH_AA, Resampler } from '../engine/resample.ts';
import { bicubicUpscale, conditionRecipe, paddedSize, upscaleTensor, type Tensor3 } from '../engine/upscale.ts';
import { seedWords } from '../engine/rng.ts';
import { device, rand, relErr, releaseDevice } from './helpers/device.ts';
import { goldenModel, goldenTensors } from './helpers/golden.ts';
import { t4 } from './reference/nn-ref.ts';
import { resizeRef } from './reference/resample-ref.ts';
import { fillRef } from './reference/rng-ref.ts';
import { dpmSolverPP2M, uniPC2, type AfterUpdate, type EpsModel } from './reference/solvers-ref.ts';
import { unetForward } from './reference/unet-ref.ts';

const SOLVERS: SamplerKind[] = ['dpmpp-2m', 'unipc', 'unipc-bh1'];

/** The reference trajectory: the points the network is evaluated at after each update (k = 1..M-1), then the result. */
function referenceTrajectory(
  kind: SamplerKind,
  model: EpsModel,
  xT: Float64Array,
  s: ScheduleTables,
  clip: boolean,
): Float64Array[] {
  const T = s.betas.length;
  const gammas = Array.from({ length: T }, (_, k) => s.gammas[T - 1 - k]);
  if (kind === 'dpmpp-2m') return dpmSolverPP2M(model, xT, gammas, clip);
  const r = uniPC2(model, xT, gammas, clip, kind === 'unipc' ? 'bh2' : 'bh1');
  return [...r.evaluatedAt.slice(1), r.result];
}

/** The table's update replayed in float64: what the GPU kernel computes, before float32. */
function replayTable(
  kind: SamplerKind,
  model: EpsModel,
  xT: Float64Array,
  s: ScheduleTables,
  clip: boolean,
): Float64Array[] {
  const T = s.betas.length;
  const tab = stepRows({ kind, schedule: s, clip });
  let y = xT;
  let h1 = new Float64Array(y.length).fill(NaN); // an unused history must not be read
  let h2 = h1;
  const out: Float64Array[] = [];
  for (let t = T - 1; t >= 0; t--) {
    const r = tab.subarray(t * ROW, (t + 1) * ROW);
    const e = model(y, r[0]);
    const m = y.map((v, i) => (clip ? Math.min(1, Math.max(-1, r[1] * v - r[2] * e[i])) : r[1] * v - r[2] * e[i]));
    const [p1, p2] = [h1, h2];
    y = y.map((v, i) => r[3] * m[i] + r[4] * v + r[5] * e[i] + (r[8] ? r[8] * p1[i] : 0) + (r[9] ? r[9] * p2[i] : 0));
    [h2, h1] = [h1, m];
    out.push(y);
  }
  return out;
}

// a smooth nonlinear stand-in for a network: eps of data that lies near tanh(x0* + 0.3 x)
const X0 = Float64Array.from({ length: 7 }, (_, i) => 0.9 * Math.sin(1.3 * i + 0.2));
const synthetic: EpsModel = (x, a) => x.map((v, i) => (v - a * Math.tanh(X0[i] + 0.3 * v)) / Math.sqrt(1 - a * a));
const START = Float64Array.from({ length: 7 }, (_, i) => Math.cos(2.1 * i));
const maxAbs = (a: Float64Array, b: Float64Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

test('the coefficient table replays each solver of the reference implementations, whole trajectories, within 1e-12', () => {
  for (const kind of SOLVERS)
    for (const spec of [
      'logsnr:1',
      'logsnr:2',
      'logsnr:3',
      'karras:4',
      'logsnr:6:0.02:50',
      'linear:9:1e-4:0.5',
      'karras:15',
    ])
      for (const clip of [true, false]) {
        const s = makeSchedule(spec);
        const want = referenceTrajectory(kind, synthetic, START, s, clip);
        const got = replayTable(kind, synthetic, START, s, clip);
        assert.is(got.length, want.length);
        got.forEach((y, k) => {
          assert.ok(maxAbs(y, want[k]) < 1e-12, `${kind} ${spec} clip ${clip} step ${k}: ${maxAbs(y, want[k])}`);
        });
      }
});

test('the solvers converge to the probability-flow ODE solution (DDIM with 4000 steps), second order', () => {
  const ode = replayTable('ddim' as SamplerKind, synthetic, START, makeSchedule('logsnr:4000'), false);
  // DDIM is not in replayTable's solver set but its table row has the same form (cp1 = cp2 = 0)
  const exact = ode[ode.length - 1];
  for (const kind of SOLVERS) {
    const err = (n: number) => {
      const y = replayTable(kind, synthetic, START, makeSchedule(`logsnr:${n}`), false);
      return maxAbs(y[y.length - 1], exact);
    };
    const [e10, e20, e40] = [err(10), err(20), err(40)];
    console.log(
      `    ${kind}: error at 10 / 20 / 40 steps ${e10.toExponential(2)} / ${e20.toExponential(2)} / ${e40.toExponential(2)}`,
    );
    assert.ok(e40 < 1e-3, `${kind} at 40 steps: ${e40}`);
    assert.ok(
      e20 / e40 > 3,
      `${kind}: halving the step cuts the error ${e20 / e40}x, expected about 4x (second order)`,
    );
  }
});

// The golden tiny U-Net, 4 steps: the GPU's y after every step against the reference solvers driving the float64
// TypeScript U-Net from the same start (every y within 1e-3 relative, the golden samplers' tolerance). The kernel's
// two history depths (1 for DPM-Solver++, 2 for UniPC); unipc-bh1 differs from unipc only in its table (tested above).
for (const kind of ['dpmpp-2m', 'unipc'] as SamplerKind[])
  test(`golden tiny: ${kind}, 4 steps of logsnr:4, every y within 1e-3 of the float64 reference`, async () => {
    const ctx = await device();
    const model = goldenModel('tiny');
    const g = goldenTensors('tiny', 'sample.safetensors');
    const [, C, H, W] = g.shape('cond');
    const B = 1; // the first image of the golden batch: the float64 U-Net is slow
    const cond = g.get('cond').subarray(0, C * H * W);
    const yT = g.get('y_T').subarray(0, C * H * W);
    const schedule = makeSchedule('logsnr:4');
    const s = await Sampler.build(ctx, model, { batch: B, height: H, width: W, sampler: { kind, schedule } });
    s.setCondition(cond);
    s.setStart(yT);
    const got: Float32Array[] = [];
    await s.run({ keepStart: true, onStep: async () => void got.push(await s.readY()) });
    s.destroy();
    const per = C * H * W;
    const eps: EpsModel = (x, level) => {
      const xin = new Float32Array(B * 2 * per);
      for (let b = 0; b < B; b++) {
        xin.set(cond.subarray(b * per, (b + 1) * per), b * 2 * per);
        xin.set(Float32Array.from(x.subarray(b * per, (b + 1) * per)), (b * 2 + 1) * per);
      }
      return Float64Array.from(
        unetForward(model.config, model.param, t4(B, 2 * C, H, W, xin), new Array(B).fill(level)).data,
      );
    };
    const want = referenceTrajectory(kind, eps, Float64Array.from(yT), schedule, true);
    assert.is(got.length, want.length);
    let worst = 0;
    got.forEach((y, k) => {
      const e = relErr(y, Float32Array.from(want[k]));
      worst = Math.max(worst, e);
      assert.ok(e <= 1e-3, `step ${k}: ${e}`);
    });
    console.log(`    ${kind}: worst relative error ${worst.toExponential(2)} over 4 steps`);
  });

const lr: Tensor3 = { channels: 3, height: 8, width: 8, data: rand(3 * 64, 9).map((v) => 0.7 * v) };

test('upscaling with each solver: reproducible, consistency keeps the input, and tiles keep their own history', async () => {
  const ctx = await device();
  const model = goldenModel('tiny');
  for (const sampler of SOLVERS) {
    const opts = { steps: 6, schedule: 'logsnr:6', sampler, seed: 1 };
    const [a] = await upscaleTensor(ctx, model, lr, opts);
    const [b] = await upscaleTensor(ctx, model, lr, opts); // a second run over the first run's history buffer
    assert.equal(Array.from(a.data), Array.from(b.data), `${sampler}: the same seed gives the same image`);
    const [free] = await upscaleTensor(ctx, model, lr, { ...opts, consistency: false });
    const [other] = await upscaleTensor(ctx, model, lr, { ...opts, seed: 2 });
    const [tiled] = await upscaleTensor(ctx, model, lr, { ...opts, tile: 16, overlap: 8 });
    assert.ok(a.data.every(Number.isFinite) && tiled.data.every(Number.isFinite));
    // consistency: the untiled image keeps the input's low frequencies far better than the one without it
    const ref = await downscale4(await bicubicUpscale(ctx, lr, 4, { method: 'interp', a: -0.75 }, true));
    const [eWith, eWithout] = [mse(await downscale4(a), ref), mse(await downscale4(free), ref)];
    // tiles start from the same canvas noise, so a deterministic solver's tiled image differs from the untiled one
    // only near tile borders (mse 0.11 measured); with the tiles sharing one history it was 0.28-0.34, and another
    // seed gives 1.17
    const [dTiled, dSeed] = [mse(tiled.data, a.data), mse(other.data, a.data)];
    console.log(
      `    ${sampler}: LR error ${eWith.toExponential(2)} with consistency, ${eWithout.toExponential(2)} without; mse to the untiled image: tiled ${dTiled.toExponential(2)}, another seed ${dSeed.toExponential(2)}`,
    );
    assert.ok(
      eWith * 20 < eWithout && eWith < 1e-3,
      `${sampler}: consistency error ${eWith} with, ${eWithout} without`,
    );
    assert.ok(dTiled * 6 < dSeed, `${sampler}: tiled ${dTiled}, another seed ${dSeed}`);
  }
});

// The consistency projection with a multistep solver, step by step as the float64 solver and U-Net see it: after
// every update y <- y - U(D(y - sigma z)) + alpha U(D(c)), z fresh noise of the step's stream (the GPU generator's
// stream = the step counter t, sub 2).
test('golden tiny: dpmpp-2m with consistency follows the float64 solver with the projection (fresh noise each step)', async () => {
  const ctx = await device();
  const model = goldenModel('tiny');
  const { scale, up } = conditionRecipe(model);
  const [h, w] = [lr.height, lr.width];
  const [H, W] = [h * scale, w * scale];
  assert.equal(paddedSize(model, H, W, scale), [H, W]);
  const seed = 3;
  const [got] = await upscaleTensor(ctx, model, lr, { schedule: 'karras:4', sampler: 'dpmpp-2m', seed });
  const C = 3;
  const per = C * H * W;
  const U = (x: ArrayLike<number>, clamp = false) => resizeRef(x, C, h, w, H, W, 'interp', up.a, clamp);
  const D = (x: ArrayLike<number>) => resizeRef(x, C, H, W, h, w, BICUBIC_TORCH_AA.method, BICUBIC_TORCH_AA.a);
  const cond = U(lr.data, true);
  const udc = U(D(cond));
  const eps: EpsModel = (x, level) => {
    const xin = new Float32Array(2 * per);
    xin.set(Float32Array.from(cond));
    xin.set(Float32Array.from(x), per);
    return Float64Array.from(unetForward(model.config, model.param, t4(1, 2 * C, H, W, xin), [level]).data);
  };
  const s = makeSchedule('karras:4');
  let t = s.betas.length; // the step counter during the step: T-1 .. 0
  const project: AfterUpdate = (x, alpha, sigma) => {
    const z = fillRef(per, seedWords(seed), --t, 2);
    const u = U(D(x.map((v, i) => v - sigma * z[i])));
    return x.map((v, i) => v - u[i] + alpha * udc[i]);
  };
  const gammas = Array.from(s.gammas).reverse();
  const yT = fillRef(per, seedWords(seed), 0, 1);
  const want = dpmSolverPP2M(eps, yT, gammas, true, project);
  const e = relErr(got.data, Float32Array.from(want[want.length - 1]));
  console.log(`    dpmpp-2m karras:4 with consistency: relative error ${e.toExponential(2)} to the float64 reference`);
  assert.ok(e <= 1e-3, `relative error ${e}`);
});

const mse = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0) / a.length;

/** The image downscaled 4x as the projection does (the model's antialiased bicubic). */
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
  const r = await ctx.read(out, (img.data.length / 16) * 4);
  inp.destroy();
  out.destroy();
  return r;
}

test.after(releaseDevice);
test.run();
