// The samplers against the reference implementation's 12 steps (golden sample.safetensors): the same start noise and
// per-step noise in, every intermediate y within max|ours - ref| / max(1, max|ref|) <= 1e-3.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Sampler, type SamplerKind } from '../engine/sampler.ts';
import { makeSchedule } from '../engine/schedule.ts';
import { device, relErr, releaseDevice, withConvKernel } from './helpers/device.ts';
import { GOLDEN_CASES, goldenModel, goldenTensors } from './helpers/golden.ts';

for (const name of GOLDEN_CASES) {
  for (const [kind, prefix] of [
    ['reference', 'ref'],
    ['paper', 'paper'],
  ] as [SamplerKind, string][]) {
    test(`golden ${name}: ${kind} sampler, 12 steps, every y_t within 1e-3`, async () => {
      const ctx = await device();
      const g = goldenTensors(name, 'sample.safetensors');
      const schedule = makeSchedule('linear:12:1e-4:0.3');
      // the schedule the file was made with, to float32 precision
      assert.ok(relErr(Float32Array.from(schedule.betas), g.get('betas')) < 1e-7);
      const [B, C, H, W] = g.shape('cond');
      const s = await Sampler.build(ctx, goldenModel(name), {
        batch: B,
        height: H,
        width: W,
        sampler: { kind, schedule },
        noise: 'provided',
      });
      s.setCondition(g.get('cond'));
      s.setStart(g.get('y_T'));
      s.setNoise(Array.from({ length: 12 }, (_, t) => g.get(`z.${t}`)));
      const errs: string[] = [];
      let worst = 0;
      await s.run({
        keepStart: true,
        onStep: async (t) => {
          const e = relErr(await s.readY(), g.get(`${prefix}.y.${t}`));
          worst = Math.max(worst, e);
          if (!(e <= 1e-3)) errs.push(`${prefix}.y.${t}: ${e.toExponential(2)}`);
        },
      });
      console.log(`    ${name} ${kind}: worst relative error ${worst.toExponential(2)} over 12 steps`);
      assert.equal(errs, []);
      assert.is(C, 3);
      s.destroy();
    });
  }
}

// With the mixed-precision conv kernels: the reference sampler's 12 steps within 1e-2 (measured with 'f16' on
// lavapipe: tiny 5.4e-3, groups32 5.6e-3; the f16 operand rounding of every conv, compounded over 12 steps).
// and with 'mma3' (f32 accuracy on tensor cores): the f32 tolerance, 1e-3
const MIXED: [string, number][] = [
  ['f16', 1e-2],
  ['mma', 1e-2],
  ['mma3', 1e-3],
];
for (const [kernel, tol] of MIXED as ['f16' | 'mma' | 'mma3', number][])
  for (const name of GOLDEN_CASES) {
    test(`golden ${name}: reference sampler with the '${kernel}' conv kernel, 12 steps, every y_t within ${tol}`, async () => {
      await withConvKernel(await device(), kernel, async (ctx) => {
        const g = goldenTensors(name, 'sample.safetensors');
        const [B, , H, W] = g.shape('cond');
        const s = await Sampler.build(ctx, goldenModel(name), {
          batch: B,
          height: H,
          width: W,
          sampler: { kind: 'reference', schedule: makeSchedule('linear:12:1e-4:0.3') },
          noise: 'provided',
        });
        s.setCondition(g.get('cond'));
        s.setStart(g.get('y_T'));
        s.setNoise(Array.from({ length: 12 }, (_, t) => g.get(`z.${t}`)));
        let worst = 0;
        await s.run({
          keepStart: true,
          onStep: async (t) => {
            worst = Math.max(worst, relErr(await s.readY(), g.get(`ref.y.${t}`)));
          },
        });
        console.log(
          `    ${name} reference sampler, ${kernel}: worst relative error ${worst.toExponential(2)} over 12 steps`,
        );
        assert.ok(worst <= tol, `worst ${worst}`);
        s.destroy();
      });
    });
  }

test.after(releaseDevice);
test.run();
