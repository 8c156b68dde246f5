// The environment switches openDevice reads (README "Environment"): a bad value is refused with a message that
// names the variable and what it takes, before anything runs, and leaves the engine's settings as they were.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openDevice } from '../engine/node/device.ts';
import * as K from '../engine/kernels.ts';
import { BATCH_LOADS, TILED_PREFETCH } from '../shaders/conv2d.ts';
import { NORM_FUSION, UNet } from '../engine/unet.ts';
import { goldenModel } from './helpers/golden.ts';
import { runCli } from './helpers/cli.ts';

const CASES: [string, string, RegExp][] = [
  ['SR3_SPLIT_K', '-3', /SR3_SPLIT_K=-3: give a workgroup count \(split-K below it\), or 0 for off/],
  ['SR3_TILED_TILE', '96x64', /SR3_TILED_TILE=96x64: give the tiled conv kernel's tile as TMxTN, each 64 or 128/],
  ['SR3_TILED_PREFETCH', 'yes', /SR3_TILED_PREFETCH=yes: give 1 .* or 0/],
  ['SR3_MMA_PREFETCH', '2', /SR3_MMA_PREFETCH=2: give 1 .* or 0/],
  ['SR3_MMA_TILE', '64', /SR3_MMA_TILE=64: give the mma conv kernel's tile as TMxTN/],
  ['SR3_BATCH_LOADS', 'on', /SR3_BATCH_LOADS=on: give 1 .* or 0/],
  ['SR3_MMA_SUBGROUPS', '16', /SR3_MMA_SUBGROUPS=16: give 4 or 8 .* subgroups/],
  ['SR3_MMA_PAD', 'yes', /SR3_MMA_PAD=yes: give 1 .* or 0/],
  ['SR3_MMA_TK', '48', /SR3_MMA_TK=48: give 32 \(the default\) or 64 reduction elements/],
  ['SR3_ATTENTION', 'fast', /SR3_ATTENTION=fast: give flash .* or gemm/],
  ['SR3_NORM', 'fuse', /SR3_NORM=fuse: give fused .* or materialized/],
  ['SR3_CONV_KERNEL', 'fast', /SR3_CONV_KERNEL=fast: unknown conv2d kernel 'fast': use one of tiled, direct, mma, f16, mma3/],
];

test('openDevice refuses a bad value of each switch, naming it, and changes no setting', async () => {
  const before = JSON.stringify([K.SPLIT_K, K.TILED_TILE, K.MMA_OPTIONS, K.ATTN_GEMM, TILED_PREFETCH, NORM_FUSION, BATCH_LOADS]);
  for (const [name, value, message] of CASES) {
    const saved = process.env[name];
    process.env[name] = value;
    try {
      await openDevice();
      assert.unreachable(`${name}=${value} accepted`);
    } catch (e) {
      assert.match((e as Error).message, message, `${name}=${value}`);
    } finally {
      if (saved === undefined) delete process.env[name];
      else process.env[name] = saved;
    }
  }
  assert.is(JSON.stringify([K.SPLIT_K, K.TILED_TILE, K.MMA_OPTIONS, K.ATTN_GEMM, TILED_PREFETCH, NORM_FUSION, BATCH_LOADS]), before);
});

test('a bad switch beside good ones: refused, and the good ones are not applied either', async () => {
  const before = JSON.stringify([K.SPLIT_K, K.TILED_TILE, K.ATTN_GEMM]);
  const env = { SR3_SPLIT_K: '128', SR3_TILED_TILE: '64x128', SR3_ATTENTION: 'fast' };
  Object.assign(process.env, env);
  try {
    await openDevice();
    assert.unreachable('accepted');
  } catch (e) {
    assert.match((e as Error).message, /SR3_ATTENTION=fast/);
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
  }
  assert.is(JSON.stringify([K.SPLIT_K, K.TILED_TILE, K.ATTN_GEMM]), before);
});

test('SR3_MMA_TK=64 where a workgroup has fewer than 64 invocations is refused at openDevice, naming the fix', async () => {
  const ctx = await openDevice();
  const s = await K.mmaSupport(ctx);
  ctx.destroy();
  if (!s.ok || 4 * s.subgroupSize! >= 64) {
    console.log(`    skipped: ${s.ok ? `4 subgroups of ${s.subgroupSize} make 64 invocations or more` : s.reason}`);
    return;
  }
  Object.assign(process.env, { SR3_MMA_TK: '64', SR3_MMA_SUBGROUPS: '4' });
  try {
    await openDevice();
    assert.unreachable('accepted');
  } catch (e) {
    assert.match((e as Error).message, /SR3_MMA_TK=64: fragments of \d+ with \d+ invocations cannot stage 64 reduction elements a step \(one invocation decodes each: use more subgroups, or 32-deep steps\) on this device/);
  } finally {
    delete process.env.SR3_MMA_TK;
    delete process.env.SR3_MMA_SUBGROUPS;
  }
  assert.is(K.MMA_OPTIONS.tk, undefined);
});

test('SR3_MMA_PAD=1 with the inline gather is refused: the padded tiles need the batched one', async () => {
  Object.assign(process.env, { SR3_MMA_PAD: '1', SR3_BATCH_LOADS: '0' });
  try {
    await openDevice();
    assert.unreachable('accepted');
  } catch (e) {
    assert.match((e as Error).message, /SR3_MMA_PAD=1: the padded tiles need the batched gather: leave SR3_BATCH_LOADS unset or 1/);
  } finally {
    delete process.env.SR3_MMA_PAD;
    delete process.env.SR3_BATCH_LOADS;
  }
  assert.is(BATCH_LOADS.on, true);
  assert.is(K.MMA_OPTIONS.pad, undefined);
});

test('the switches take effect on an accepted value', async () => {
  const env = { SR3_SPLIT_K: '128', SR3_TILED_TILE: '64x128', SR3_TILED_PREFETCH: '0', SR3_ATTENTION: 'gemm', SR3_NORM: 'materialized', SR3_BATCH_LOADS: '0', SR3_MMA_SUBGROUPS: '4' };
  Object.assign(process.env, env);
  try {
    assert.is(BATCH_LOADS.on, true, 'the batched gather is the default');
    const ctx = await openDevice();
    ctx.destroy();
    assert.is(K.SPLIT_K.target, 128);
    assert.equal({ ...K.TILED_TILE }, { TM: 64, TN: 128 });
    assert.is(TILED_PREFETCH.on, false);
    assert.is(K.ATTN_GEMM.force, true);
    assert.is(NORM_FUSION.materialize, true);
    assert.is(BATCH_LOADS.on, false);
    assert.is(K.MMA_OPTIONS.subgroups, 4);
  } finally {
    BATCH_LOADS.on = true;
    delete K.MMA_OPTIONS.subgroups;
    for (const k of Object.keys(env)) delete process.env[k];
    K.SPLIT_K.target = 256;
    delete K.TILED_TILE.TM;
    delete K.TILED_TILE.TN;
    TILED_PREFETCH.on = true;
    delete K.ATTN_GEMM.force;
    delete NORM_FUSION.materialize;
  }
});

// SR3_NORM's setting reaches the U-Net: the fused form has no GroupNorm-apply dispatches, the materialised one has
// one per normalised conv input
test('NORM_FUSION decides where GroupNorm is applied when the caller does not', async () => {
  const ctx = await openDevice();
  try {
    const count = async (materialize: boolean | undefined) => {
      if (materialize === undefined) delete NORM_FUSION.materialize;
      else NORM_FUSION.materialize = materialize;
      const net = await UNet.build(ctx, goldenModel('tiny'), { batch: 1, height: 16, width: 16 });
      const n = net.dispatches.filter((d) => d.pipeline.label === 'gn_apply').length;
      net.destroy();
      return n;
    };
    const fused = await count(false);
    const materialized = await count(true);
    assert.is(fused, 0);
    assert.ok(materialized > 10, `${materialized} GroupNorm-apply dispatches`);
    // unset: the device decides (materialised on a software device, fused on a GPU)
    assert.is(await count(undefined), ctx.adapter.isSoftware ? materialized : 0);
  } finally {
    delete NORM_FUSION.materialize;
    ctx.destroy();
  }
});

test('sr3 --help names the environment switches, with every conv2d kernel', async () => {
  const r = await runCli(['--help']);
  assert.is(r.code, 0);
  const line = r.out.split('\n').find((l) => l.trim().startsWith('SR3_CONV_KERNEL'));
  assert.ok(line, r.out);
  for (const k of K.CONV_KERNELS) assert.match(line!, new RegExp(`\\b${k}\\b`), `${k} in: ${line}`);
});

test.run();
