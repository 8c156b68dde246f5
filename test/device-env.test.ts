// The environment switches openDevice reads (README "Environment"): parseSwitches turns them into engine options
// without a device, refusing a bad value with a message that names the variable and what it takes; openDevice puts
// them on the context and checks what depends on the device. Nothing is module state: two contexts, or a context
// and its views, hold their own options.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openDevice, parseSwitches } from '../engine/node/device.ts';
import * as K from '../engine/kernels.ts';
import { resolveEngineOptions } from '../engine/options.ts';
import { UNet } from '../engine/unet.ts';
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
  [
    'SR3_CONV_KERNEL',
    'fast',
    /SR3_CONV_KERNEL=fast: unknown conv2d kernel 'fast': use one of tiled, direct, mma, f16, mma3/,
  ],
];

test('parseSwitches refuses a bad value of each switch, naming it (no device needed)', () => {
  for (const [name, value, message] of CASES) {
    assert.throws(() => parseSwitches({ [name]: value }), message, `${name}=${value}`);
  }
  // a bad switch beside good ones is refused all the same
  assert.throws(
    () => parseSwitches({ SR3_SPLIT_K: '128', SR3_TILED_TILE: '64x128', SR3_ATTENTION: 'fast' }),
    /SR3_ATTENTION=fast/,
  );
  assert.throws(
    () => parseSwitches({ SR3_MMA_PAD: '1', SR3_BATCH_LOADS: '0' }),
    /SR3_MMA_PAD=1: the padded tiles need the batched gather: leave SR3_BATCH_LOADS unset or 1/,
  );
  assert.throws(() => parseSwitches({ SR3_GPU_PATHS: 'yes' }), /SR3_GPU_PATHS=yes: give 1/);
});

test('parseSwitches: each accepted value becomes its option, an unset variable leaves the default', () => {
  assert.equal(parseSwitches({}), {});
  assert.equal(parseSwitches({ SR3_SPLIT_K: ' ', HOME: '/root' }), {}, 'blank is unset; other variables are not read');
  const s = parseSwitches({
    SR3_CONV_KERNEL: 'tiled',
    SR3_GPU_PATHS: '1',
    SR3_SPLIT_K: '128',
    SR3_TILED_TILE: '64x128',
    SR3_TILED_PREFETCH: '0',
    SR3_MMA_PREFETCH: '0',
    SR3_ATTENTION: 'gemm',
    SR3_NORM: 'materialized',
    SR3_BATCH_LOADS: '0',
    SR3_MMA_SUBGROUPS: '4',
    SR3_MMA_TK: '64',
    SR3_MMA_TILE: '32x64',
  });
  assert.equal(s, {
    convKernel: 'tiled',
    paths: 'gpu',
    splitK: { target: 128 },
    tiledTile: { TM: 64, TN: 128 },
    tiledPrefetch: false,
    batchLoads: false,
    mma: { prefetch: false, subgroups: 4, tk: 64, TM: 32, TN: 64 },
    attention: 'gemm',
    norm: 'materialized',
  });
  // over a software adapter's defaults
  const o = resolveEngineOptions({ isSoftware: true }, s);
  assert.equal(o.splitK, { target: 128 });
  assert.equal(o.mma, { prefetch: false, subgroups: 4, pad: false, tk: 64, TM: 32, TN: 64 });
  assert.is(o.paths, 'gpu');
  const d = resolveEngineOptions({ isSoftware: true });
  assert.equal(
    [d.paths, d.convKernel, d.attention, d.norm, d.batchLoads, d.tiledPrefetch, d.mma.subgroups],
    ['software', 'direct', 'auto', 'auto', true, true, 8],
  );
  assert.ok(Object.isFrozen(d) && Object.isFrozen(d.mma), 'resolved options cannot be changed behind a context');
});

test('openDevice puts the switches on its context; the adapter is reported as it is', async () => {
  const env = {
    SR3_SPLIT_K: '128',
    SR3_TILED_TILE: '64x128',
    SR3_TILED_PREFETCH: '0',
    SR3_ATTENTION: 'gemm',
    SR3_GPU_PATHS: '1',
  };
  Object.assign(process.env, env);
  let ctx: Awaited<ReturnType<typeof openDevice>>;
  try {
    ctx = await openDevice();
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
  }
  try {
    assert.is(ctx.options.splitK.target, 128);
    assert.equal({ ...ctx.options.tiledTile }, { TM: 64, TN: 128 });
    assert.is(ctx.options.tiledPrefetch, false);
    assert.is(ctx.options.attention, 'gemm');
    assert.is(ctx.options.paths, 'gpu');
    assert.is(ctx.options.convKernel, 'tiled', 'the GPU paths choose the tiled kernel');
    // SR3_GPU_PATHS no longer edits the adapter: `sr3 doctor` reports what the device is
    const plain = await openDevice();
    assert.is(ctx.adapter.isSoftware, plain.adapter.isSoftware);
    assert.is(plain.options.splitK.target, 256, 'another context keeps the defaults');
    plain.destroy();
  } finally {
    ctx.destroy();
  }
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
    assert.match(
      (e as Error).message,
      /SR3_MMA_TK=64: fragments of \d+ with \d+ invocations cannot stage 64 reduction elements a step \(one invocation decodes each: use more subgroups, or 32-deep steps\) on this device/,
    );
  } finally {
    delete process.env.SR3_MMA_TK;
    delete process.env.SR3_MMA_SUBGROUPS;
  }
});

test('a conv kernel the device cannot run is refused at openDevice, naming the variable', async () => {
  const ctx = await openDevice();
  const s = await K.mmaSupport(ctx);
  ctx.destroy();
  if (s.ok) {
    console.log('    skipped: this device runs the mma kernel');
    return;
  }
  process.env.SR3_CONV_KERNEL = 'mma';
  try {
    await openDevice();
    assert.unreachable('accepted');
  } catch (e) {
    assert.match((e as Error).message, /^SR3_CONV_KERNEL=mma: the 'mma' conv2d kernel cannot run here: /);
  } finally {
    delete process.env.SR3_CONV_KERNEL;
  }
});

// EngineOptions.norm reaches the U-Net: the fused form has no GroupNorm-apply dispatches, the materialised one has
// one per normalised conv input
test('the norm option decides where GroupNorm is applied when the caller does not', async () => {
  const base = await openDevice();
  try {
    const count = async (norm: 'fused' | 'materialized' | 'auto') => {
      const net = await UNet.build(base.withOptions({ norm }), goldenModel('tiny'), {
        batch: 1,
        height: 16,
        width: 16,
      });
      const n = net.dispatches.filter((d) => d.pipeline.label === 'gn_apply').length;
      net.destroy();
      return n;
    };
    const fused = await count('fused');
    const materialized = await count('materialized');
    assert.is(fused, 0);
    assert.ok(materialized > 10, `${materialized} GroupNorm-apply dispatches`);
    // auto: the code paths decide (materialised on the software paths, fused on the GPU ones)
    assert.is(await count('auto'), base.options.paths === 'software' ? materialized : 0);
  } finally {
    base.destroy();
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
