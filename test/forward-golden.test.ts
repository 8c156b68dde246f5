// The whole U-Net against the reference PyTorch implementation's own outputs (float64 there, float32 here):
// eps and every layer's activation within max|ours - ref| / max(1, max|ref|) <= 1e-4.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { UNet } from '../engine/unet.ts';
import { device, relErr, releaseDevice, withConvKernel } from './helpers/device.ts';
import { GOLDEN_CASES, goldenModel, goldenTensors } from './helpers/golden.ts';

for (const name of GOLDEN_CASES)
  for (const materializeNorm of [false, true]) {
    const how = materializeNorm ? 'GroupNorm written out before each conv' : 'GroupNorm fused into the conv input load';
    test(`golden ${name} (${how}): eps and every activation within 1e-4 of the reference`, async () => {
      const ctx = await device();
      const model = goldenModel(name);
      const g = goldenTensors(name, 'forward.safetensors');
      const [B, , H, W] = g.shape('x_in');
      const net = await UNet.build(ctx, model, {
        batch: B,
        height: H,
        width: W,
        keepActivations: true,
        materializeNorm,
      });
      const eps = await net.forward(g.get('x_in'), g.get('noise_level'));
      const errs: string[] = [];
      let worst = 0;
      const check = (key: string, got: Float32Array) => {
        const e = relErr(got, g.get(key));
        worst = Math.max(worst, e);
        if (!(e <= 1e-4)) errs.push(`${key}: ${e.toExponential(2)}`);
      };
      const acts = g.keys.filter((k) => k.startsWith('act.'));
      assert.ok(acts.length > 10, 'golden file has activations');
      for (const k of acts) {
        const a = net.activations.get(k);
        assert.ok(a, `engine has no activation ${k}`);
        const n = g.get(k).length;
        assert.is(
          a!.shape.reduce((x, y) => x * y, 1),
          n,
          `${k} size`,
        );
        check(k, await ctx.read(a!.buf, n * 4));
      }
      check('eps', eps);
      console.log(
        `    ${name}, ${materializeNorm ? 'materialised' : 'fused'} GroupNorm: worst relative error ${worst.toExponential(2)} over eps and ${acts.length} activations`,
      );
      assert.equal(errs, [], errs.join('\n'));
      net.destroy();
    });
  }

// The mixed-precision conv kernels (f16 operands, f32 accumulation) state their own tolerance: 5e-3 over eps and
// every activation (measured with 'f16' on lavapipe: tiny 1.3e-3, groups32 1.4e-3 worst, eps 0.9e-3 / 1.1e-3).
// 'mma3' (tensor cores, each operand split into two f16s) is an f32-accuracy kernel: the f32 tolerance, 1e-4.
const TENSOR_KERNELS: ['f16' | 'mma' | 'mma3', number][] = [
  ['f16', 5e-3],
  ['mma', 5e-3],
  ['mma3', 1e-4],
];
for (const [kernel, tol] of TENSOR_KERNELS)
  for (const name of GOLDEN_CASES) {
    test(`golden ${name} with the '${kernel}' conv kernel: eps and every activation within ${tol} of the reference`, async () => {
      await withConvKernel(await device(), kernel, async (ctx) => {
        const model = goldenModel(name);
        const g = goldenTensors(name, 'forward.safetensors');
        const [B, , H, W] = g.shape('x_in');
        const net = await UNet.build(ctx, model, { batch: B, height: H, width: W, keepActivations: true });
        const eps = await net.forward(g.get('x_in'), g.get('noise_level'));
        let worst = 0;
        const errs: string[] = [];
        for (const k of [...g.keys.filter((k) => k.startsWith('act.')), 'eps']) {
          const got = k === 'eps' ? eps : await ctx.read(net.activations.get(k)!.buf, g.get(k).length * 4);
          const e = relErr(got, g.get(k));
          worst = Math.max(worst, e);
          if (!(e <= tol)) errs.push(`${k}: ${e.toExponential(2)}`);
        }
        const epsErr = relErr(eps, g.get('eps'));
        console.log(
          `    ${name}, ${kernel}: worst relative error ${worst.toExponential(2)}, eps ${epsErr.toExponential(2)}`,
        );
        assert.equal(errs, [], errs.join('\n'));
        // the f16 rounding must show: an f32 kernel chosen by mistake would be within 1e-5
        if (kernel !== 'mma3') assert.ok(epsErr > 1e-5, `eps ${epsErr}: the mixed kernel did not run`);
        net.destroy();
      });
    });
  }

test('the same output with activation buffers shared (memory planner) as without', async () => {
  const ctx = await device();
  const model = goldenModel('tiny');
  const g = goldenTensors('tiny', 'forward.safetensors');
  const [B, , H, W] = g.shape('x_in');
  const net = await UNet.build(ctx, model, { batch: B, height: H, width: W });
  const eps = await net.forward(g.get('x_in'), g.get('noise_level'));
  assert.ok(relErr(eps, g.get('eps')) <= 1e-4);
  assert.ok(net.memory.activations < net.memory.unshared, net.describeMemory());
  net.destroy();
});

test('parameters split over several buffers (a model larger than one storage binding): the same eps', async () => {
  const ctx = await device();
  const model = goldenModel('groups32');
  const g = goldenTensors('groups32', 'forward.safetensors');
  const [B, , H, W] = g.shape('x_in');
  // 384 KiB bindings (its largest layer, a 128->64 3x3 conv, is 289 KiB): the 2.3 MB of groups32 parameters in
  // several chunks, cut only between layers
  const net = await UNet.build(ctx, model, { batch: B, height: H, width: W, maxParamBindingBytes: 384 * 1024 });
  const chunks = net.paramChunks;
  assert.ok(chunks.length >= 5, `${chunks.length} chunks`);
  for (const c of chunks) assert.ok((c.end - c.start) * 4 <= 384 * 1024, 'every chunk fits the binding');
  for (let i = 1; i < chunks.length; i++) assert.ok(chunks[i].start >= chunks[i - 1].end, 'chunks do not overlap');
  const eps = await net.forward(g.get('x_in'), g.get('noise_level'));
  const e = relErr(eps, g.get('eps'));
  console.log(`    groups32 over ${chunks.length} parameter buffers: eps relative error ${e.toExponential(2)}`);
  assert.ok(e <= 1e-4, `eps ${e}`);
  net.destroy();
  // a single layer larger than the binding cannot be split
  try {
    await UNet.build(ctx, model, { batch: B, height: H, width: W, maxParamBindingBytes: 4096 });
    assert.unreachable();
  } catch (err) {
    assert.match(
      (err as Error).message,
      /one layer's parameters take .* more than one storage binding of this device holds/,
    );
  }
});

test('a model that does not fit the input is refused with a clear message', async () => {
  const ctx = await device();
  const model = goldenModel('tiny');
  try {
    await UNet.build(ctx, model, { batch: 1, height: 30, width: 32 });
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /multiples of 4; got 30x32/);
  }
  const net = await UNet.build(ctx, model, { batch: 1, height: 8, width: 12 });
  try {
    await net.forward(new Float32Array(10), new Float32Array(1));
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /built for \[1, 6, 8, 12\]/);
  }
  net.destroy();
});

test.after(releaseDevice);
test.run();
