// Training against the reference PyTorch implementation (golden tiny train.safetensors): the L1 and L2 losses (sum),
// every parameter's gradient within max|ours - ref| / max(1, max|ref|) <= 1e-3, and the weights after one and two
// Adam steps (lr 1e-4) on the L1 loss within 1e-6 absolute.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { GpuContext } from '../engine/gpu.ts';
import { TrainGraph } from '../engine/train.ts';
import { device, relErr, releaseDevice, withConvKernel } from './helpers/device.ts';
import { goldenModel, goldenTensors } from './helpers/golden.ts';

const g = goldenTensors('tiny', 'train.safetensors');
const batch = { hr: g.get('hr'), cond: g.get('sr'), sqrtGamma: g.get('sqrt_gamma'), noise: g.get('noise') };
const [B, , H, W] = g.shape('hr');

async function checkGradients(kind: 'l1' | 'l2', what: string, on?: GpuContext, tol = 1e-3): Promise<void> {
  const ctx = on ?? (await device());
  const tg = await TrainGraph.build(ctx, goldenModel('tiny'), {
    batch: B,
    height: H,
    width: W,
    loss: kind,
    reduction: 'sum',
  });
  tg.setBatch(batch);
  const lossV = await tg.run();
  const want = g.get(`${kind}.loss`)[0];
  assert.ok(Math.abs(lossV - want) / Math.max(1, Math.abs(want)) <= tol / 10, `loss ${lossV} vs ${want}`);
  const grads = tg.byName(await tg.readGrads());
  let worst = 0;
  const bad: string[] = [];
  for (const [name, got] of grads) {
    const e = relErr(got, g.get(`${kind}.grad.denoise_fn.${name}`));
    worst = Math.max(worst, e);
    if (!(e <= tol)) bad.push(`${name}: ${e.toExponential(2)}`);
  }
  console.log(
    `    ${what}: loss ${lossV.toFixed(3)} (reference ${want.toFixed(3)}), worst gradient error ${worst.toExponential(2)} over ${grads.size} parameters`,
  );
  assert.equal(bad, []);
  tg.destroy();
}

for (const kind of ['l1', 'l2'] as const) {
  test(`golden tiny: ${kind} loss and every gradient`, () => checkGradients(kind, kind));
}

// the forward convs on the tensor cores at f32 accuracy ('mma3'): the same tolerances (npm run test:mma runs it)
test(`golden tiny with the 'mma3' conv kernel: l2 loss and every gradient`, async () => {
  const ctx = await device();
  await withConvKernel(ctx, 'mma3', (mma3) => checkGradients('l2', 'l2, mma3', mma3));
});

// the forward convs with f16 operands on the tensor cores ('mma', what a GPU slice trains with where it has them): the
// backward stays f32, so the gradients move only by the forward's rounding. Stated tolerance 1e-2 (relative to
// max(1, max|ref|), per parameter); npm run test:mma measures it on lavapipe's subgroup matrices
test(`golden tiny with the 'mma' conv kernel (f16 operands): loss and every gradient within 1e-2`, async () => {
  const ctx = await device();
  await withConvKernel(ctx, 'mma', (mma) => checkGradients('l2', 'l2, mma', mma, 1e-2));
});

test('golden tiny: weights after one and two Adam steps within 1e-6', async () => {
  const ctx = await device();
  const tg = await TrainGraph.build(ctx, goldenModel('tiny'), {
    batch: B,
    height: H,
    width: W,
    loss: 'l1',
    reduction: 'sum',
    adam: { lr: 1e-4 },
  });
  tg.setBatch(batch);
  for (const k of [1, 2]) {
    await tg.run(true);
    const params = tg.byName(await tg.readParams());
    let worst = 0;
    for (const [name, got] of params) {
      const ref = g.get(`adam${k}.denoise_fn.${name}`);
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - ref[i]));
    }
    console.log(`    adam${k}: worst absolute weight error ${worst.toExponential(2)}`);
    assert.ok(worst <= 1e-6, `adam${k}: ${worst}`);
  }
  tg.destroy();
});

test.after(releaseDevice);
test.run();
