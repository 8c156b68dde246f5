// Every U-Net kernel against the plain TypeScript reference, on odd, non-square shapes, batch > 1, sizes that do not
// divide the 64x64 conv tile or the 16-query attention tile.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as K from '../engine/kernels.ts';
import * as R from './reference/nn-ref.ts';
import { device, rand, relErr, releaseDevice } from './helpers/device.ts';
import { packParams, runConvCase, type ConvCase } from './helpers/conv.ts';

async function runConv(opts: ConvCase) {
  // input B off zero, statistics at an offset not zero
  const { exact } = await runConvCase(await device(), opts, { bScale: 3, bShift: 0.5, pad: 0, statsOff: 8 });
  assert.ok(exact < 2e-5, `conv ${JSON.stringify(opts)}: rel err ${exact}`);
}

test('conv3x3 stride 1, odd non-square map, batch 2, bias', () =>
  runConv({ B: 2, C1: 5, C2: 0, H: 9, W: 13, Cout: 7, ks: 3, stride: 1, bias: true, seed: 10 }));

test('conv3x3 over a concatenation with GroupNorm + Swish, embedding and residual (a ResnetBlock conv)', () =>
  runConv({
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
    seed: 20,
  }));

test('conv3x3 stride 2 (Downsample) on odd sizes', () =>
  runConv({ B: 1, C1: 6, C2: 0, H: 7, W: 10, Cout: 6, ks: 3, stride: 2, bias: true, seed: 30 }));

test('nearest x2 upsampling folded into conv3x3 (Upsample)', () =>
  runConv({ B: 2, C1: 3, C2: 0, H: 5, W: 3, Cout: 4, ks: 3, stride: 1, upsample: true, bias: true, seed: 40 }));

test('conv1x1 with GroupNorm (no Swish), no bias, Cout and pixels over one tile (attention qkv)', () =>
  runConv({ B: 2, C1: 8, C2: 0, H: 9, W: 10, Cout: 70, ks: 1, stride: 1, norm: 1, G: 4, seed: 50 }));

test('conv1x1 over a concatenation (res_conv) and a long K (many K tiles)', () =>
  runConv({ B: 1, C1: 21, C2: 19, H: 4, W: 5, Cout: 3, ks: 1, stride: 1, bias: true, seed: 60 }));

test('conv3x3 with Cin*9 not a multiple of the K tile and GroupNorm groups of one channel', () =>
  runConv({ B: 3, C1: 5, C2: 0, H: 3, W: 4, Cout: 66, ks: 3, stride: 1, norm: 2, G: 5, bias: true, seed: 70 }));

for (const [B, C, H, W] of [
  [2, 20, 5, 7],
  [1, 16, 4, 4],
  [1, 40, 3, 11],
  [2, 70, 9, 10], // several key blocks of 64, a partial last block, two channel groups per thread
  [2, 70, 10, 10], // the same with HW a multiple of 4 (vec4 reads): a last block of 36 keys
  [1, 64, 12, 12], // three key blocks, the last of 16
] as const) {
  for (const form of ['flash', 'gemm'] as const) {
    test(`attention B${B} C${C} ${H}x${W}, ${form === 'flash' ? 'flash-style online softmax' : 'two GEMMs and a row softmax'} vs direct`, async () => {
      const ctx = (await device()).withOptions({ attention: form });
      const HW = H * W;
      const qkv = rand(B * 3 * C * HW, B * 100 + C).map((v) => v * 2);
      const qb = ctx.upload(qkv);
      const out = ctx.buffer(B * C * HW * 4);
      const ds = await K.attention(ctx, { B, C, HW, label: 'attn' }, { qkv: qb, out });
      assert.is(ds.length, form === 'gemm' ? 3 : 1, 'the GEMM form: scores, softmax, output');
      ctx.run(ds);
      const got = await ctx.read(out, B * C * HW * 4);
      const want = R.attentionCore(R.t4(B, 3 * C, H, W, qkv));
      const err = relErr(got, want.data);
      assert.ok(err < 1e-5, `attention rel err ${err}`);
    });
  }
}

test('positional encoding, Linear, Swish, Linear (the noise-level MLP), batch 3', async () => {
  const ctx = await device();
  const B = 3;
  const dim = 10;
  const level = new Float32Array([0.05, 0.5, 0.999]);
  const w1 = rand(4 * dim * dim, 1);
  const b1 = rand(4 * dim, 2);
  const w2 = rand(dim * 4 * dim, 3);
  const b2 = rand(dim, 4);
  const { buf: params, offs } = packParams(ctx, { w1, b1, w2, b2 });
  const lv = ctx.upload(level);
  const enc = ctx.buffer(B * dim * 4);
  const h = ctx.buffer(B * 4 * dim * 4);
  const out = ctx.buffer(B * dim * 4 + 64);
  ctx.run([
    await K.positionalEncoding(ctx, { B, dim }, { level: lv, out: enc }),
    await K.linear(ctx, { B, K: dim, N: 4 * dim, wOff: offs.w1, bOff: offs.b1 }, { params, inp: enc, out: h }),
    await K.linear(
      ctx,
      { B, K: 4 * dim, N: dim, wOff: offs.w2, bOff: offs.b2, outOff: 16, actIn: true },
      { params, inp: h, out },
    ),
  ]);
  const gotEnc = await ctx.read(enc, B * dim * 4);
  const wantEnc = R.positionalEncoding(level, dim);
  assert.ok(relErr(gotEnc, wantEnc) < 1e-6, `posenc err ${relErr(gotEnc, wantEnc)}`);
  const got = (await ctx.read(out)).subarray(16, 16 + B * dim);
  const want = R.linear(R.linear(wantEnc, B, dim, w1, b1, 4 * dim), B, 4 * dim, w2, b2, dim, true);
  assert.ok(relErr(got, want) < 1e-5, `mlp err ${relErr(got, want)}`);
});

test('a GroupNorm whose groups do not divide the channels is refused', async () => {
  const ctx = await device();
  const a = ctx.buffer(64);
  try {
    await K.groupNormStats(ctx, { B: 1, C1: 6, C2: 0, HW: 1, groups: 4, statsOff: 0, label: 'gn' }, { a, stats: a });
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /6 channels do not divide into 4 groups/);
  }
});

// GroupNorm statistics against float64, one workgroup per group and split over chunks (the GPU form: chunks that
// cross channel rows and the concatenation's boundary, vec4 and scalar reads, values far from zero)
for (const [B, C1, C2, H, W, G, P] of [
  [2, 3, 5, 12, 12, 2, 5], // vec4 reads, groups of 4 channels straddling the concatenation, chunks of 29 vec4s
  [1, 6, 0, 7, 9, 3, 4], // scalar reads (63 pixels), chunks of 32
  [2, 8, 0, 4, 4, 8, 3], // one channel a group, 4 vec4s in 3 chunks (of 2, 2 and none: merged to 2 chunks)
] as const) {
  test(`groupnorm stats B${B} C${C1}+${C2} ${H}x${W} G${G}: one workgroup a group, and ${P} chunks combined`, async () => {
    const ctx = await device();
    const HW = H * W;
    const a = rand(B * C1 * HW, 90 + B).map((v) => 100 + 0.1 * v);
    const bIn = rand(B * C2 * HW, 91).map((v) => 99.9 + 0.3 * v);
    const aBuf = ctx.upload(a);
    const bBuf = C2 ? ctx.upload(bIn) : undefined;
    const cpg = (C1 + C2) / G;
    const want: number[] = [];
    for (let b = 0; b < B; b++) {
      for (let g = 0; g < G; g++) {
        const xs: number[] = [];
        for (let c = g * cpg; c < (g + 1) * cpg; c++) {
          for (let i = 0; i < HW; i++) xs.push(c < C1 ? a[(b * C1 + c) * HW + i] : bIn[(b * C2 + c - C1) * HW + i]);
        }
        const mean = xs.reduce((s, v) => s + v, 0) / xs.length;
        const v = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length;
        want.push(mean, 1 / Math.sqrt(v + 1e-5));
      }
    }
    let worst = 0;
    for (const force of [undefined, P]) {
      const gctx = force === undefined ? ctx : ctx.withOptions({ gnSplit: { force } });
      {
        const stats = ctx.buffer((B * G * 2 + 4) * 4);
        const ds = await K.groupNormStats(
          gctx,
          { B, C1, C2, HW, groups: G, statsOff: 4, label: 'gn' },
          { a: aBuf, b: bBuf, stats },
        );
        assert.is(ds.length, force !== undefined ? 2 : 1, 'the split form is a pair of dispatches');
        ctx.run(ds);
        const got = (await ctx.read(stats, (B * G * 2 + 4) * 4)).subarray(4);
        for (let i = 0; i < B * G; i++) {
          const em = Math.abs(got[2 * i] - want[2 * i]) / Math.abs(want[2 * i]);
          const er = Math.abs(got[2 * i + 1] - want[2 * i + 1]) / want[2 * i + 1];
          worst = Math.max(worst, er);
          assert.ok(
            em < 1e-6 && er < 1e-4,
            `split ${force}: group ${i}: mean ${got[2 * i]} vs ${want[2 * i]}, rstd ${got[2 * i + 1]} vs ${want[2 * i + 1]}`,
          );
        }
      }
    }
    console.log(`    worst rstd relative error ${worst.toExponential(2)}`);
  });
}

test('attention as GEMMs refuses a score buffer over the storage binding limit, naming the way out', async () => {
  const ctx = (await device()).withOptions({ attention: 'gemm' });
  // more positions than fit: HW^2 * 4 bytes over the limit (the buffers themselves are never touched)
  const HW = Math.ceil(Math.sqrt(ctx.limits.maxStorageBufferBindingSize / 4)) + 1;
  try {
    await K.attention(ctx, { B: 1, C: 4, HW, label: 'attn' }, { qkv: ctx.buffer(64), out: ctx.buffer(64) });
    assert.unreachable('accepted');
  } catch (e) {
    assert.match(
      (e as Error).message,
      /attn: attention as GEMMs needs .* MiB of scores .* over this device's .* storage binding limit: use the flash form \(SR3_ATTENTION=flash/,
    );
  }
});

test.after(releaseDevice);
test.run();
