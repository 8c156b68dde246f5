// GELU (tanh approximation) as the U-Net's activation instead of Swish (UNetConfig.activation): the float64
// reference against known values and its derivative against finite differences, then every forward kernel that
// applies the activation with ACT = gelu against the reference (the backward kernels are in backward.test.ts), and
// the config and plan that carry the option. Small shapes: lavapipe is slow.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as K from '../engine/kernels.ts';
import * as KB from '../engine/kernels-backward.ts';
import { planUNet } from '../engine/unet-plan.ts';
import { actConstant } from '../shaders/activation.ts';
import { type UNetConfig, validateConfig } from '../weights-format/config.ts';
import * as R from './reference/nn-ref.ts';
import * as RB from './reference/nn-backward-ref.ts';
import { device, rand, relErr, releaseDevice } from './helpers/device.ts';

test('the GELU reference: fixed values, and its derivative against central differences', () => {
  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) evaluated once in float64 (the formula of torch's
  // gelu(approximate='tanh'); not taken from torch, which this machine does not have): a guard against edits
  // to the reference
  for (const [x, want] of [
    [0, 0],
    [1, 0.8411919906082768],
    [-3, -0.0036373920817729943],
    [0.5, 0.34571400982514394],
    [2, 1.954597694087775],
  ]) {
    assert.ok(Math.abs(R.gelu(x) - want) < 1e-15, `gelu(${x}) = ${R.gelu(x)}, want ${want}`);
  }
  const h = 1e-5;
  for (const x of [-4, -1.3, -0.2, 0, 0.7, 2.5]) {
    const fd = (R.gelu(x + h) - R.gelu(x - h)) / (2 * h);
    assert.ok(Math.abs(fd - RB.geluGrad(x)) < 1e-9, `gelu'(${x}): ${RB.geluGrad(x)} vs finite difference ${fd}`);
  }
});

test('the activation is a model option: validated, absent for Swish, carried by the plan into every spec', () => {
  const base = {
    in_channel: 6,
    out_channel: 3,
    inner_channel: 8,
    channel_mults: [1, 2],
    res_blocks: 1,
    norm_groups: 4,
    dropout: 0,
    attn_levels: [1],
  };
  assert.is(validateConfig(base).activation, undefined);
  assert.is(validateConfig({ ...base, activation: 'gelu' }).activation, 'gelu');
  assert.throws(() => validateConfig({ ...base, activation: 'relu' }), /activation must be one of swish, gelu/);
  assert.equal(actConstant('swish'), { ACT: 0 });
  assert.equal(actConstant('gelu'), { ACT: 1 });
  const swish = planUNet(base, 1, 8, 8);
  assert.ok(swish.ops.every((op) => op.kind !== 'conv' || op.spec.act === undefined));
  const cfg: UNetConfig = { ...base, activation: 'gelu' };
  const gelu = planUNet(cfg, 1, 8, 8);
  const convs = gelu.ops.filter((op) => op.kind === 'conv');
  assert.ok(convs.every((op) => op.spec.act === 'gelu'));
  assert.is(gelu.mlp.act, 'gelu');
});

test('GroupNorm + GELU: fused into a conv input load, and materialised (vec4 and scalar) against the reference', async () => {
  const ctx = await device();
  const B = 2;
  const C = 6;
  const G = 3;
  const Cout = 5;
  for (const [H, W] of [
    [4, 4],
    [3, 5],
  ]) {
    const HW = H * W;
    const a = rand(B * C * HW, H).map((v) => 2 * v);
    const gamma = rand(C, 2).map((v) => 1 + v);
    const beta = rand(C, 3);
    const w = rand(Cout * C * 9, 4).map((v) => 0.3 * v);
    const params = ctx.upload(new Float32Array([...gamma, ...beta, ...w]));
    const aBuf = ctx.upload(a);
    const stats = ctx.buffer(B * G * 2 * 4);
    const xn = ctx.buffer(B * C * HW * 4);
    const out = ctx.buffer(B * Cout * HW * 4);
    const outUp = ctx.buffer(B * Cout * 4 * HW * 4); // the same conv after nearest x2 upsampling
    const norm = { statsOff: 0, gammaOff: 0, betaOff: C };
    const spec = {
      B,
      C1: C,
      C2: 0,
      Hin: H,
      Win: W,
      Cout,
      ks: 3 as const,
      stride: 1 as const,
      norm: 2 as const,
      act: 'gelu' as const,
      groups: G,
      ...norm,
      wOff: 2 * C,
      bOff: -1,
    };
    ctx.run([
      ...(await K.groupNormStats(ctx, { B, C1: C, C2: 0, HW, groups: G, statsOff: 0 }, { a: aBuf, stats })),
      await KB.groupNormApply(
        ctx,
        { B, C1: C, C2: 0, HW, groups: G, ...norm, withAct: true, act: 'gelu' },
        { params, a: aBuf, stats, out: xn },
      ),
      ...(await K.conv2d(ctx, spec, { params, a: aBuf, stats, out })),
      ...(await K.conv2d(ctx, { ...spec, upsample: true }, { params, a: aBuf, stats, out: outUp })),
    ]);
    const x = R.groupNorm(R.t4(B, C, H, W, a), G, gamma, beta, 'gelu');
    const eApply = relErr(await ctx.read(xn, B * C * HW * 4), x.data);
    assert.ok(eApply < 1e-5, `${H}x${W}: materialised GroupNorm + GELU rel err ${eApply}`);
    const want = R.conv2d(x, w, null, Cout, 3, 1);
    const eConv = relErr(await ctx.read(out, B * Cout * HW * 4), want.data);
    assert.ok(eConv < 2e-5, `${H}x${W}: conv of GroupNorm + GELU rel err ${eConv}`);
    const wantUp = R.conv2d(R.upsample2(x), w, null, Cout, 3, 1);
    const eUp = relErr(await ctx.read(outUp, B * Cout * 4 * HW * 4), wantUp.data);
    assert.ok(eUp < 2e-5, `${H}x${W}: upsampling conv of GroupNorm + GELU rel err ${eUp}`);
    for (const b of [params, aBuf, stats, xn, out, outUp]) b.destroy();
  }
});

test('the noise-level MLP with GELU on its hidden units against the reference', async () => {
  const ctx = await device();
  const B = 3;
  const Kd = 12;
  const N = 7;
  const x = rand(B * Kd, 5).map((v) => 3 * v);
  const w = rand(N * Kd, 6);
  const bias = rand(N, 7);
  const params = ctx.upload(new Float32Array([...w, ...bias]));
  const inp = ctx.upload(x);
  const out = ctx.buffer(B * N * 4);
  ctx.run([
    await K.linear(ctx, { B, K: Kd, N, wOff: 0, bOff: N * Kd, actIn: true, act: 'gelu' }, { params, inp, out }),
  ]);
  const e = relErr(await ctx.read(out, B * N * 4), R.linear(x, B, Kd, w, bias, N, 'gelu'));
  assert.ok(e < 1e-5, `linear with GELU in: rel err ${e}`);
  for (const b of [params, inp, out]) b.destroy();
});

test.after(releaseDevice);
test.run();
