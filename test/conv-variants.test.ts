// Both conv2d shaders (the tiled GEMM for GPUs and the direct register-blocked one for software devices) against the
// float64 TypeScript reference, whichever the device would pick: shapes that leave partial pixel blocks (W not a
// multiple of the 4/8-pixel rows), partial channel blocks, several staged weight chunks, and every fusion.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { GpuContext } from '../engine/gpu.ts';
import * as K from '../engine/kernels.ts';
import { device, releaseDevice } from './helpers/device.ts';
import { runConvCase, type ConvCase } from './helpers/conv.ts';
import { conv2dMmaWgsl, mmaTile } from '../shaders/conv2d_mma.ts';
import { resolveEngineOptions, type EngineOptions, type EngineSwitches } from '../engine/options.ts';

type Case = ConvCase;

/** Run one case on the context's current kernel: its error against the float64 reference, exact and with f16 operands. */
function run(ctx: GpuContext, o: Case): Promise<{ exact: number; f16: number }> {
  // weights at an odd offset in the params buffer: no alignment may be assumed
  return runConvCase(ctx, o, { bScale: 2, bShift: -0.3, pad: 3, statsOff: 4 });
}

async function check(ctx: GpuContext, o: Case, what: string): Promise<void> {
  const { exact } = await run(ctx, o);
  assert.ok(exact < 2e-5, `${what} ${JSON.stringify(o)}: rel err ${exact}`);
}

const CASES: Case[] = [
  { B: 2, C1: 5, C2: 0, H: 9, W: 13, Cout: 7, ks: 3, stride: 1, bias: true, seed: 1 },
  {
    B: 2,
    C1: 4,
    C2: 8,
    H: 6,
    W: 11,
    Cout: 9,
    ks: 3,
    stride: 1,
    norm: 2,
    G: 3,
    bias: true,
    emb: true,
    res: true,
    seed: 2,
  },
  { B: 1, C1: 6, C2: 0, H: 7, W: 10, Cout: 6, ks: 3, stride: 2, bias: true, seed: 3 },
  { B: 1, C1: 5, C2: 0, H: 9, W: 17, Cout: 3, ks: 3, stride: 2, norm: 2, G: 5, bias: true, seed: 4 },
  { B: 2, C1: 3, C2: 0, H: 5, W: 3, Cout: 4, ks: 3, stride: 1, upsample: true, bias: true, seed: 5 },
  { B: 1, C1: 4, C2: 2, H: 4, W: 9, Cout: 10, ks: 3, stride: 1, upsample: true, norm: 1, G: 2, res: true, seed: 6 },
  { B: 2, C1: 8, C2: 0, H: 9, W: 10, Cout: 70, ks: 1, stride: 1, norm: 1, G: 4, seed: 7 },
  { B: 1, C1: 21, C2: 19, H: 4, W: 5, Cout: 3, ks: 1, stride: 1, bias: true, seed: 8 },
  // a 19-wide map (two full 8-pixel rows and a partial one), 20 output channels (a partial channel block), a
  // concatenation of 3 + 14 channels (more than one staged weight chunk when CC is small), GroupNorm + Swish
  {
    B: 2,
    C1: 3,
    C2: 14,
    H: 5,
    W: 19,
    Cout: 20,
    ks: 3,
    stride: 1,
    norm: 2,
    G: 17,
    bias: true,
    emb: true,
    res: true,
    seed: 9,
  },
  { B: 1, C1: 40, C2: 0, H: 3, W: 33, Cout: 9, ks: 3, stride: 1, norm: 2, G: 8, bias: true, seed: 10 },
  // a large map and 33 output channels: the direct kernel's 16-pixel rows (a partial last one), partial channel blocks
  { B: 1, C1: 3, C2: 2, H: 64, W: 65, Cout: 33, ks: 3, stride: 1, norm: 2, G: 5, bias: true, emb: true, seed: 11 },
  // rows a multiple of 4 wide: the direct kernel's vec4 input loads (left/right borders inside vec4s)
  { B: 2, C1: 5, C2: 3, H: 6, W: 20, Cout: 12, ks: 3, stride: 1, norm: 2, G: 4, bias: true, res: true, seed: 12 },
  { B: 1, C1: 7, C2: 0, H: 5, W: 8, Cout: 5, ks: 1, stride: 1, bias: true, seed: 13 },
  { B: 1, C1: 3, C2: 0, H: 64, W: 64, Cout: 33, ks: 3, stride: 1, norm: 2, G: 3, emb: true, seed: 14 },
  // upsampling with the direct kernel's 16-pixel rows (34 wide: a partial last one) over a concatenation
  {
    B: 2,
    C1: 5,
    C2: 3,
    H: 7,
    W: 17,
    Cout: 12,
    ks: 3,
    stride: 1,
    upsample: true,
    norm: 2,
    G: 4,
    bias: true,
    emb: true,
    res: true,
    seed: 15,
  },
];

// The cases that reach the kernel variants' differences: partial pixel and channel tiles, the concatenation with
// GroupNorm + Swish, stride 2, upsampling, a 1x1 conv, the large map. Each default kernel runs every case; its
// variants run these (each variant is a new pipeline per case, and lavapipe's first compile of one takes seconds).
const VARIANT_CASES = [CASES[1], CASES[3], CASES[5], CASES[6], CASES[8], CASES[10]];

for (const kernel of ['tiled', 'direct'] as const) {
  test(`conv2d ${kernel}: every case within 2e-5 of the float64 reference`, async () => {
    const ctx = (await device()).withOptions({ convKernel: kernel });
    for (const c of CASES) await check(ctx, c, kernel);
  });
}

test('conv2d tiled with each tile shape (64/128 pixels x 64/128 channels): within 2e-5 of the float64 reference', async () => {
  const ctx = (await device()).withOptions({ convKernel: 'tiled' });
  for (const TM of [64, 128] as const)
    for (const TN of [64, 128] as const) {
      // partial pixel and channel tiles, the concatenation with GroupNorm + Swish, stride 2, upsampling, a 1x1 conv
      for (const c of VARIANT_CASES) await check(ctx.withOptions({ tiledTile: { TM, TN } }), c, `tiled ${TM}x${TN}`);
    }
  assert.equal(K.tiledShape(128 * 128, 64), { TM: 128, TN: 64 });
  assert.equal(K.tiledShape(16 * 16, 512), { TM: 64, TN: 128 });
  assert.equal(K.tiledShape(16 * 16, 512, { TM: 128 }), { TM: 128, TN: 128 });
});

test('conv2d tiled without the register prefetch (plain staging): every case within 2e-5 of the float64 reference', async () => {
  const ctx = (await device()).withOptions({ convKernel: 'tiled', tiledPrefetch: false });
  for (const c of CASES) await check(ctx, c, 'tiled, no prefetch');
});

// The GEMM kernels gather with a step's loads issued together by default (the batched gather: named registers,
// clamped addresses, the GroupNorm, Swish and zero padding applied as values are stored), so the tests above run it;
// here the inline form (SR3_BATCH_LOADS=0), with and without the prefetch, and the batched form's larger tiles
test('conv2d tiled with the inline gather, and the batched one with every tile: within 2e-5 of the float64 reference', async () => {
  const ctx = (await device()).withOptions({ convKernel: 'tiled' });
  assert.ok(ctx.options.batchLoads, 'the batched gather is the default');
  for (const c of VARIANT_CASES) await check(ctx.withOptions({ batchLoads: false }), c, 'tiled, inline gather');
  for (const [TM, TN, prefetch, batched] of [
    [128, 128, true, true],
    [64, 128, false, true],
    [128, 64, false, false],
  ] as const) {
    const v = ctx.withOptions({ tiledTile: { TM, TN }, tiledPrefetch: prefetch, batchLoads: batched });
    for (const c of VARIANT_CASES)
      await check(v, c, `tiled ${TM}x${TN}, ${batched ? 'batched' : 'inline'}${prefetch ? '' : ', no prefetch'}`);
  }
});

test('conv2d direct with a small block (4 pixels x 4 channels, 8 lanes, 1 staged channel, scalar loads)', async () => {
  const ctx = (await device()).withOptions({
    convKernel: 'direct',
    directBlock: { PX: 4, RN: 4, CC: 1, WG: 8, vec: false },
  });
  for (const c of [CASES[1], CASES[3], CASES[5], CASES[8], CASES[11], CASES[12]]) await check(ctx, c, 'direct 4x4');
});

// Split-K (the reduction cut into chunks run by separate workgroups, then summed with the epilogue by a second
// pass): forced on every case, for the tiled f32 kernel and the f16 one.
test('conv2d tiled with split-K forced (3 chunks): every case within 2e-5 of the float64 reference', async () => {
  const ctx = (await device()).withOptions({ convKernel: 'tiled', splitK: { force: 3 } });
  {
    // the reduction pass follows (cases whose reduction is shorter than 3 k-steps run unsplit)
    const [d, reduce] = await K.conv2d(
      ctx,
      { B: 1, C1: 8, C2: 0, Hin: 4, Win: 4, Cout: 4, ks: 3, stride: 1, wOff: 0, bOff: -1, label: 'probe' },
      {
        params: ctx.buffer(4096),
        a: ctx.buffer(4096),
        out: ctx.buffer(4096),
      },
    );
    assert.ok(reduce, 'a split conv has a reduction pass');
    assert.is(d.workgroups[2], 3, 'workgroups z = batch x splits');
    for (const c of CASES) await check(ctx, c, 'tiled split-K');
  }
});

test('split-K choice: only convs that leave a GPU idle, chunks of whole k-steps, never on a software device', async () => {
  const gpu = resolveEngineOptions({ isSoftware: false });
  // 8x8 x 512 -> 512 at batch 1: 1 x 8 workgroups, K = 4608
  const low = K.splitK(gpu, 8, 4608, 16);
  assert.is(low.S, 32);
  assert.is(low.kChunk % 16, 0);
  assert.ok(low.kChunk * low.S >= 4608 && low.kChunk * (low.S - 1) < 4608);
  // a full-resolution layer already fills the GPU
  assert.is(K.splitK(gpu, 4 * 256, 576, 16).S, 1);
  // a short reduction is not split below 8 k-steps a chunk
  assert.is(K.splitK(gpu, 4, 54, 16).S, 1);
  assert.is(K.splitK(gpu, 16, 512, 32).S, 2);
  assert.is(K.splitK(gpu, 8, 4608, 16, 3).S, 3, 'at most the chunks whose partial sums fit one storage binding');
  assert.is(K.splitK(gpu, 8, 4608, 16, 1).S, 1);
  assert.is(K.splitK(resolveEngineOptions({ isSoftware: true }), 8, 4608, 16).S, 1);
  assert.is(
    K.splitK(resolveEngineOptions({ isSoftware: true }, { paths: 'gpu' }), 8, 4608, 16).S,
    32,
    'the GPU paths on a software adapter',
  );
  assert.is(
    K.splitK(resolveEngineOptions({ isSoftware: false }, { splitK: { target: 0 } }), 8, 4608, 16).S,
    1,
    'target 0: off',
  );
});

// The mixed-precision kernels round each operand to f16 and accumulate in f32. Against a reference that rounds the
// same operands they must agree to f32 summation error; against the exact reference the rounding shows (stated
// tolerance 2e-3 of the output's scale per conv; these cases measure 1.9-3.3e-4 with the f16 kernel on lavapipe).
async function checkMixed(ctx: GpuContext, kernel: 'f16' | 'mma'): Promise<void> {
  await checkMixedOnce(ctx, kernel);
  await checkMixedOnce(ctx.withOptions({ splitK: { force: 2 } }), kernel); // and with the reduction split in two
}

async function checkMixedOnce(on: GpuContext, kernel: 'f16' | 'mma', cases = CASES): Promise<void> {
  const ctx = on.withOptions({ convKernel: kernel });
  await K.checkEngineOptions(ctx);
  {
    let worstF16 = 0;
    let worstExact = 0;
    for (const c of cases) {
      const { exact, f16 } = await run(ctx, c);
      worstF16 = Math.max(worstF16, f16);
      worstExact = Math.max(worstExact, exact);
      // with GroupNorm, the engine's f32 statistics and the reference's float64 ones can round a value near an f16
      // boundary differently: a few ulp flips (up to 1e-4 measured); without it, only the summation order differs
      const tol = c.norm ? 2e-4 : 2e-6;
      assert.ok(f16 < tol, `${kernel} ${JSON.stringify(c)}: ${f16} from the f16-rounded reference`);
      assert.ok(exact < 2e-3, `${kernel} ${JSON.stringify(c)}: ${exact} from the exact reference`);
    }
    // the f16 rounding must be visible: an f32 kernel chosen by mistake would be 1e-7 from the exact reference
    assert.ok(worstExact > 1e-5, `${kernel}: ${worstExact} from the exact reference: are the operands really f16?`);
    console.log(
      `    conv2d ${kernel}: worst ${worstF16.toExponential(2)} from the f16-rounded reference, ${worstExact.toExponential(2)} from the exact one`,
    );
  }
}

test('conv2d f16 (f16 operands, f32 accumulation): every case to f32 rounding of the f16-operand reference', async () => {
  const ctx = await device();
  if (!ctx.features.shaderF16) {
    console.log(`    skipped: ${ctx.adapter.description} has no shader-f16`);
    return;
  }
  await checkMixed(ctx, 'f16');
  console.log('    without the register prefetch:');
  await checkMixedOnce(ctx.withOptions({ mma: { prefetch: false } }), 'f16', VARIANT_CASES);
  console.log('    with the inline gather:');
  await checkMixedOnce(ctx.withOptions({ batchLoads: false }), 'f16', VARIANT_CASES);
});

/**
 * Whether the device runs the tensor-core kernels; where it does not, that selecting `kernel` is refused with `why`. npm run test:mma runs on a lavapipe with cooperative matrices: there, a refusal
 * is a failure.
 */
async function tensorCoreSupport(ctx: GpuContext, kernel: 'mma' | 'mma3', why: RegExp): Promise<K.MmaSupport> {
  const s = await K.mmaSupport(ctx);
  if (process.env.SR3_EXPECT_MMA === '1')
    assert.ok(s.ok, `SR3_EXPECT_MMA=1 but the ${kernel} kernel cannot run: ${s.reason}`);
  if (s.ok) return s;
  try {
    await K.checkEngineOptions(ctx.withOptions({ convKernel: kernel }));
    assert.unreachable(`${kernel} accepted without support`);
  } catch (e) {
    assert.match((e as Error).message, why);
  }
  console.log(`    ${kernel} not available: ${s.reason}`);
  return s;
}

test('conv2d mma (subgroup matrices): the same, where the device has them; otherwise refused with the reason', async () => {
  const ctx = await device();
  const s = await tensorCoreSupport(ctx, 'mma', /'mma' conv2d kernel cannot run here: .+; use 'f16' or 'tiled'/);
  if (!s.ok) return;
  console.log(
    `    mma: subgroup size ${s.subgroupSize}, ${s.fragment}x${s.fragment} fragments, '${s.syntax}' builtin spelling`,
  );
  await checkMixed(ctx, 'mma');
  // another tile the device allows: one fragment row per subgroup by four columns (the unequal walk); and without
  // the register prefetch
  const S = s.fragment!;
  // (the default: 8 subgroups a workgroup, a 2 x 4 grid, and the batched gather) no prefetch; the inline gather; 4
  // subgroups (2 x 2), with either gather; padded tiles; 64-deep steps
  const variants: (Partial<EngineOptions['mma']> & { batched?: boolean })[] = [
    { prefetch: false },
    { batched: false },
    { subgroups: 4 },
    { subgroups: 4, batched: false, TM: 2 * S, TN: 8 * S },
    { pad: true },
    { pad: true, subgroups: 4, TM: 2 * S, TN: 8 * S },
    { tk: 64 },
    { tk: 64, pad: true },
  ];
  for (const v of variants) {
    const { batched, ...mma } = v;
    console.log(`    mma with ${JSON.stringify(v)}:`);
    await checkMixedOnce(ctx.withOptions({ mma, batchLoads: batched ?? true }), 'mma', VARIANT_CASES);
  }
});

// 'mma3': the tensor cores with each operand split into an f16 and its scaled f16 remainder, three products per
// fragment: an f32-accuracy kernel, so the f32 kernels' tolerance (2e-5 of the float64 reference) applies. Dropping
// the remainders would leave the plain mma kernel's 1e-4 to 3e-4, so the test sees whether the split is real.
test('conv2d mma3 (split f16 on subgroup matrices): every case within 2e-5 of the float64 reference, where the device has them', async () => {
  const ctx = await device();
  const s = await tensorCoreSupport(ctx, 'mma3', /'mma3' conv2d kernel cannot run here: .+; use 'tiled' \(f32\)/);
  if (!s.ok) return;
  const S = s.fragment!;
  // the default tiles, split-K, the largest tile the split kernel takes (8 fragments a subgroup: 4 x 2 with the
  // default 8 subgroups), without the register prefetch, the inline gather, 4 subgroups
  const variants: [string, EngineSwitches][] = [
    ['default', {}],
    ['split-K 2', { splitK: { force: 2 } }],
    [`${8 * S}x${8 * S} tiles`, { mma: { TM: 8 * S, TN: 8 * S } }],
    ['no prefetch', { mma: { prefetch: false } }],
    ['inline gather', { batchLoads: false }],
    ['inline gather, 4 subgroups', { batchLoads: false, mma: { subgroups: 4 } }],
    ['padded tiles', { mma: { pad: true } }],
    // 64-deep steps, with split-K: its chunks must be whole steps of the kernel, or a chunk's last step would add in
    // the next chunk's first 32 reduction elements as well
    ['64-deep steps, split-K 3', { mma: { tk: 64 }, splitK: { force: 3 } }],
  ];
  const mma3 = ctx.withOptions({ convKernel: 'mma3' });
  await K.checkEngineOptions(mma3);
  for (const [what, switches] of variants) {
    const ctx = mma3.withOptions(switches);
    let worst = 0;
    // the variants on the cases that reach their differences: partial tiles, the concatenation with GroupNorm +
    // Swish, stride 2, upsampling, a 1x1 conv, the large map
    for (const c of what === 'default' ? CASES : VARIANT_CASES) {
      const { exact } = await run(ctx, c);
      worst = Math.max(worst, exact);
      assert.ok(exact < 2e-5, `mma3 (${what}) ${JSON.stringify(c)}: rel err ${exact}`);
    }
    console.log(`    conv2d mma3 (${what}): worst ${worst.toExponential(2)} from the float64 reference`);
  }
});

// NVIDIA's shapes (16x16 fragments, subgroups of 32) cannot run here, but Dawn's WGSL front end checks the module
// before the pipeline is refused for its config: every tile, split or not, with and without the prefetch.
test('the mma kernels for NVIDIA (16x16 fragments, subgroups of 32): every tile validates as WGSL, where the device has subgroup matrices', async () => {
  const ctx = await device();
  const s = await K.mmaSupport(ctx);
  if (!s.ok) {
    console.log(`    skipped: ${s.reason}`);
    return;
  }
  let n = 0;
  for (const split of [false, true])
    for (const [TM, TN] of [
      [128, 128],
      [128, 64],
      [64, 128],
      [64, 64],
      [32, 128],
    ]) {
      if (split && TM * TN > 128 * 64) continue;
      for (const prefetch of [true, false])
        for (const [batched, pad] of [
          [false, false],
          [true, false],
          [true, true],
        ])
          for (const subgroups of [4, 8] as const)
            for (const tk of [32, 64] as const) {
              if (subgroups === 8 && TN < 64) continue;
              if (tk === 64 && (!batched || (TM * 64) / (32 * subgroups) > 32)) continue;
              const code = conv2dMmaWgsl({
                body: 'subgroup-matrix',
                subgroupSize: 32,
                fragment: 16,
                TM,
                TN,
                split,
                prefetch,
                syntax: s.syntax,
                batched,
                subgroups,
                pad,
                tk,
              });
              await ctx.shader(code, `conv2d_mma_nvidia_${TM}x${TN}${split ? '_split' : ''}`); // throws with the compiler's messages
              n++;
            }
    }
  console.log(`    ${n} NVIDIA-shaped modules validate`);
});

test('mma tiles: chosen within the fragments and subgroups, and a tile that cannot work is refused with the reason', () => {
  // NVIDIA: 16x16 fragments, subgroups of 32 (128 invocations); lavapipe: 8x8, subgroups of 8 (32 invocations)
  assert.equal(K.mmaShape(128 * 128, 64, { fragment: 16, subgroupSize: 32 }), { TM: 128, TN: 64 });
  assert.equal(K.mmaShape(16 * 16, 512, { fragment: 16, subgroupSize: 32 }), { TM: 64, TN: 128 });
  assert.equal(K.mmaShape(128 * 128, 512, { fragment: 8, subgroupSize: 8 }), { TM: 32, TN: 64 });
  for (const [TM, TN] of [
    [128, 128],
    [64, 64],
    [32, 32],
    [32, 128],
  ]) {
    const t = mmaTile({ body: 'subgroup-matrix', subgroupSize: 32, fragment: 16, TM, TN });
    assert.equal([t.FM, t.FN], [TM / 32, TN / 32]);
  }
  assert.throws(
    () => mmaTile({ body: 'subgroup-matrix', subgroupSize: 32, fragment: 16, TM: 48, TN: 64 }),
    /TM = 48 must be a multiple of 32 and at most 128/,
  );
  assert.throws(
    () => mmaTile({ body: 'subgroup-matrix', subgroupSize: 32, fragment: 16, TM: 64, TN: 256 }),
    /TN = 256 must be a multiple of 32 and at most 128/,
  );
  assert.throws(
    () => mmaTile({ body: 'subgroup-matrix', subgroupSize: 8, fragment: 8, TM: 64, TN: 64 }),
    /TM = 64 pixels do not divide the 32 invocations/,
  );
  // the split kernel: 4 fragments a subgroup by default (pixels halved first), up to 8 when asked for
  assert.equal(K.mmaShape(128 * 128, 128, { fragment: 16, subgroupSize: 32, split: true }), { TM: 32, TN: 128 });
  assert.equal(K.mmaShape(128 * 128, 64, { fragment: 16, subgroupSize: 32, split: true }), { TM: 64, TN: 64 });
  // 8 subgroups: 2 x 4 over the tile, so channels come in fours of fragments, and the split kernel's 4 fragments a
  // subgroup reach 128 x 64 or 64 x 128
  assert.equal(K.mmaShape(128 * 128, 512, { fragment: 16, subgroupSize: 32, subgroups: 8 }), { TM: 128, TN: 128 });
  assert.equal(K.mmaShape(128 * 128, 64, { fragment: 16, subgroupSize: 32, subgroups: 8, split: true }), {
    TM: 128,
    TN: 64,
  });
  assert.equal(K.mmaShape(128 * 128, 128, { fragment: 16, subgroupSize: 32, subgroups: 8, split: true }), {
    TM: 64,
    TN: 128,
  });
  const t8 = mmaTile({ body: 'subgroup-matrix', subgroupSize: 32, fragment: 16, TM: 128, TN: 128, subgroups: 8 });
  assert.equal([t8.FM, t8.FN], [4, 2]);
  assert.throws(
    () => mmaTile({ body: 'subgroup-matrix', subgroupSize: 32, fragment: 16, TM: 64, TN: 32, subgroups: 8 }),
    /TN = 32 must be a multiple of 64 and at most 128 \(fragments of 16, 8 subgroups\)/,
  );
  // padded tiles: columns 8 f16s further apart, counted in the workgroup memory; only with the batched gather
  const padded = mmaTile({
    body: 'subgroup-matrix',
    subgroupSize: 32,
    fragment: 16,
    TM: 128,
    TN: 64,
    subgroups: 8,
    split: true,
    batched: true,
    pad: true,
    maxWorkgroupBytes: 49152,
  });
  assert.equal([padded.AP, padded.BP], [136, 40]);
  // 64-deep steps: at most 32 gathered values an invocation, so 128 pixels take 8 subgroups
  assert.is(
    mmaTile({
      body: 'subgroup-matrix',
      subgroupSize: 32,
      fragment: 16,
      TM: 128,
      TN: 128,
      subgroups: 8,
      batched: true,
      tk: 64,
      pad: true,
      maxWorkgroupBytes: 49152,
    }).TK,
    64,
  );
  assert.throws(
    () => mmaTile({ body: 'subgroup-matrix', subgroupSize: 32, fragment: 16, TM: 128, TN: 64, batched: true, tk: 64 }),
    /a 128x64 step is 64 values an invocation to gather; the batched gather holds at most 32/,
  );
  assert.equal(K.mmaShape(128 * 128, 128, { fragment: 16, subgroupSize: 32, subgroups: 4, tk: 64 }), {
    TM: 64,
    TN: 128,
  });
  assert.throws(
    () =>
      mmaTile({
        body: 'subgroup-matrix',
        subgroupSize: 32,
        fragment: 16,
        TM: 128,
        TN: 64,
        split: true,
        pad: true,
        maxWorkgroupBytes: 49152,
      }),
    /padded tiles need the subgroup-matrix body and the batched gather/,
  );
  assert.throws(
    () =>
      mmaTile({
        body: 'subgroup-matrix',
        subgroupSize: 32,
        fragment: 16,
        TM: 128,
        TN: 128,
        subgroups: 8,
        split: true,
        batched: true,
        pad: true,
        maxWorkgroupBytes: 49152,
      }),
    /a 128x128 tile \(split\) needs 5\d{4} bytes of workgroup memory, over this device's 49152/,
  );
  assert.equal(K.mmaShape(128 * 128, 512, { fragment: 8, subgroupSize: 8, split: true }), { TM: 16, TN: 64 });
  assert.equal(
    mmaTile({ body: 'subgroup-matrix', subgroupSize: 32, fragment: 16, TM: 128, TN: 64, split: true }).FM,
    4,
  );
  // workgroup memory: the split 128x64 tile stages 2 x 192 x 32 f16s and 8 result fragments (33408 bytes in all,
  // what Dawn counts for the generated kernel), over a 32 KiB device; 64x64 fits
  const big = {
    body: 'subgroup-matrix',
    subgroupSize: 32,
    fragment: 16,
    split: true,
    maxWorkgroupBytes: 32768,
  } as const;
  assert.throws(
    () => mmaTile({ ...big, TM: 128, TN: 64 }),
    /a 128x64 tile \(split\) needs 33408 bytes of workgroup memory, over this device's 32768/,
  );
  assert.equal(mmaTile({ ...big, TM: 64, TN: 64 }).FM, 2);
  assert.throws(
    () => mmaTile({ body: 'subgroup-matrix', subgroupSize: 32, fragment: 16, TM: 128, TN: 128, split: true }),
    /16 fragments a subgroup; the split kernel takes at most 8/,
  );
});

test('an unknown conv2d kernel name is refused with the list', async () => {
  const ctx = await device();
  try {
    ctx.withOptions({ convKernel: 'fast' as K.ConvKernel });
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /unknown conv2d kernel 'fast': use one of tiled, direct, mma, f16, mma3/);
  }
});

test('the automatic choice: direct on a software adapter, tiled on a GPU (or on the GPU paths)', async () => {
  assert.is(resolveEngineOptions({ isSoftware: true }).convKernel, 'direct');
  assert.is(resolveEngineOptions({ isSoftware: false }).convKernel, 'tiled');
  assert.is(resolveEngineOptions({ isSoftware: true }, { paths: 'gpu' }).convKernel, 'tiled');
  const ctx = await device();
  assert.is(ctx.options.convKernel, ctx.options.paths === 'software' ? 'direct' : 'tiled');
  assert.is(ctx.withOptions({ convKernel: 'tiled' }).options.convKernel, 'tiled');
  assert.is(
    ctx.options.convKernel,
    ctx.options.paths === 'software' ? 'direct' : 'tiled',
    'a view leaves its context as it was',
  );
});

test.after(releaseDevice);
test.run();
