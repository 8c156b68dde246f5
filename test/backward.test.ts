// Every backward kernel twice: the float64 reference backward (test/reference/nn-backward-ref.ts) against central
// finite differences of the float64 forward (nn-ref.ts) on a random projection of the output, and the WGSL kernels
// against that reference element-wise. Small random shapes: odd and non-square maps, batch 2, concatenated inputs,
// upsampling, stride 2, sizes that do not divide the 64x64 GEMM tiles or the 16-wide attention tiles.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as K from '../engine/kernels.ts';
import * as KB from '../engine/kernels-backward.ts';
import * as R from './reference/nn-ref.ts';
import * as RB from './reference/nn-backward-ref.ts';
import { device, rand, relErr, releaseDevice } from './helpers/device.ts';
import { packParams, type ConvCase as BaseConvCase } from './helpers/conv.ts';

const f64 = (a: ArrayLike<number>) => Float64Array.from(a as ArrayLike<number>);
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

/**
 * Central differences of `loss` w.r.t. a few coordinates of `x` (perturbed in place and restored) against the
 * analytic gradient; returns the worst |fd - analytic| / max(1, |analytic|).
 */
function fdCheck(
  name: string,
  x: Float64Array,
  analytic: ArrayLike<number>,
  loss: () => number,
  count = 6,
  seed = 1,
): void {
  assert.is(analytic.length, x.length, `${name}: gradient length`);
  const picks = rand(count, seed).map((v) => Math.floor(((v + 1) / 2) * x.length));
  const h = 1e-5;
  for (const i of picks) {
    const x0 = x[i];
    x[i] = x0 + h;
    const lp = loss();
    x[i] = x0 - h;
    const lm = loss();
    x[i] = x0;
    const fd = (lp - lm) / (2 * h);
    const err = Math.abs(fd - analytic[i]) / Math.max(1, Math.abs(analytic[i]));
    assert.ok(err < 1e-6, `${name}[${i}]: finite difference ${fd} vs analytic ${analytic[i]} (err ${err})`);
  }
}

function close(name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol = 1e-5): void {
  const e = relErr(got, want);
  assert.ok(e < tol, `${name}: rel err ${e}`);
}

// ---------------------------------------------------------------------------------------------- fused conv backward

interface ConvCase extends Omit<BaseConvCase, 'res'> {
  split?: number;
  xn?: boolean;
  /** the activation of norm 2 (default Swish) */
  act?: 'gelu';
}

async function convCase(o: ConvCase) {
  const { B, C1, C2, H, W, Cout, ks, stride } = o;
  const Cin = C1 + C2;
  const norm = o.norm ?? 0;
  const G = o.G ?? 1;
  const a = rand(B * C1 * H * W, o.seed);
  const bIn = rand(B * C2 * H * W, o.seed + 1).map((v) => v * 2 + 0.3);
  const w = rand(Cout * Cin * ks * ks, o.seed + 2).map((v) => v * 0.3);
  const bias = rand(Cout, o.seed + 3);
  const gamma = rand(Cin, o.seed + 4).map((v) => 1 + 0.5 * v);
  const beta = rand(Cin, o.seed + 5);
  const emb = rand(B * Cout, o.seed + 6);
  const [Ho, Wo] = K.convOutSize({ Hin: H, Win: W, ks, stride, upsample: o.upsample });
  const r = rand(B * Cout * Ho * Wo, o.seed + 7); // the projection: L = sum(r * out), so dOut = r

  // float64 forward as a function of the (mutable) float64 copies, for finite differences
  const P = { a: f64(a), b: f64(bIn), w: f64(w), bias: f64(bias), gamma: f64(gamma), beta: f64(beta), emb: f64(emb) };
  const convInput = () => {
    let x = R.t4(B, C1, H, W, P.a);
    if (C2) x = R.concat(x, R.t4(B, C2, H, W, P.b));
    const cat = x;
    if (norm) x = R.groupNorm(x, G, P.gamma, P.beta, norm === 2 && (o.act ?? true));
    if (o.upsample) x = R.upsample2(x);
    return { cat, x };
  };
  const forward = () => {
    let y = R.conv2d(convInput().x, P.w, o.bias ? P.bias : null, Cout, ks, stride);
    if (o.emb) y = R.addPerChannel(y, P.emb);
    return y;
  };
  const lossFn = () => dot(forward().data, r);

  // float64 reference backward
  const dOut = R.t4(B, Cout, Ho, Wo, r);
  const { cat, x } = convInput();
  const cb = RB.conv2dBackward(x, P.w, Cout, ks, stride, dOut);
  const dEmb = RB.addPerChannelBackward(dOut);
  let dx = o.upsample ? RB.upsample2Backward(cb.dx) : cb.dx;
  let dGamma: Float64Array | null = null;
  let dBeta: Float64Array | null = null;
  if (norm) {
    const gb = RB.groupNormBackward(cat, G, P.gamma, P.beta, norm === 2 && (o.act ?? true), dx);
    dx = gb.dx;
    dGamma = gb.dgamma;
    dBeta = gb.dbeta;
  }
  const [dA, dB] = C2 ? RB.splitChannels(dx, C1) : [dx, null];

  // 1. reference backward vs finite differences
  fdCheck('dA', P.a, dA.data, lossFn, 6, o.seed);
  if (dB) fdCheck('dB', P.b, dB.data, lossFn, 6, o.seed + 1);
  fdCheck('dW', P.w, cb.dw, lossFn, 6, o.seed + 2);
  if (o.bias) fdCheck('dBias', P.bias, cb.db, lossFn, 3, o.seed + 3);
  if (o.emb) fdCheck('dEmb', P.emb, dEmb, lossFn, 3, o.seed + 4);
  if (norm) {
    fdCheck('dGamma', P.gamma, dGamma!, lossFn, 3, o.seed + 5);
    fdCheck('dBeta', P.beta, dBeta!, lossFn, 3, o.seed + 6);
  }

  // 2. GPU kernels vs the reference; dA and dB accumulate into pre-filled buffers, the parameter gradients overwrite
  const ctx = await device();
  const { buf: params, offs, n: nParams } = packParams(ctx, { w, bias, gamma, beta }, 3);
  const aBuf = ctx.upload(a);
  const bBuf = C2 ? ctx.upload(bIn) : undefined;
  const statsOff = 6;
  const stats = ctx.buffer((statsOff + B * G * 2) * 4);
  const dOutBuf = ctx.upload(r);
  const grads = ctx.upload(new Float32Array(nParams).fill(NaN)); // every written gradient must be overwritten
  const embOff = 5;
  const dEmbBuf = ctx.buffer((embOff + B * Cout) * 4);
  const prefill = rand(B * C1 * H * W, o.seed + 8);
  const dABuf = ctx.upload(prefill);
  const prefillB = rand(B * C2 * H * W, o.seed + 9);
  const dBBuf = C2 ? ctx.upload(prefillB) : undefined;
  const spec: KB.ConvBackwardSpec = {
    B,
    C1,
    C2,
    Hin: H,
    Win: W,
    Cout,
    ks,
    stride,
    upsample: o.upsample,
    norm,
    groups: G,
    statsOff,
    gammaOff: offs.gamma,
    betaOff: offs.beta,
    wOff: offs.w,
    bOff: o.bias ? offs.bias : -1,
    embOff: o.emb ? embOff : -1,
    act: o.act,
    label: 'conv',
  };
  const split = o.split ?? 1;
  const sizes = KB.conv2dBackwardScratchBytes(spec, split);
  const scratch = {
    dYA: sizes.dYA ? ctx.buffer(sizes.dYA) : undefined,
    dYB: sizes.dYB ? ctx.buffer(sizes.dYB) : undefined,
    gn: sizes.gn ? ctx.buffer(sizes.gn) : undefined,
    dw: sizes.dw ? ctx.buffer(sizes.dw) : undefined,
    xn: o.xn ? ctx.buffer(sizes.xn) : undefined,
  };
  const dispatches = [];
  if (norm)
    dispatches.push(
      ...(await K.groupNormStats(
        ctx,
        { B, C1, C2, HW: H * W, groups: G, statsOff, label: 'gn' },
        { a: aBuf, b: bBuf, stats },
      )),
    );
  dispatches.push(
    ...(await KB.conv2dBackward(
      ctx,
      spec,
      {
        params,
        a: aBuf,
        b: bBuf,
        stats: norm ? stats : undefined,
        dOut: dOutBuf,
        grads,
        dEmb: dEmbBuf,
        dA: dABuf,
        dB: dBBuf,
        scratch,
      },
      { accumulate: true, split },
    )),
  );
  ctx.run(dispatches);
  const g = await ctx.read(grads, nParams * 4);
  const tol = 2e-5;
  close(
    'gpu dA (accumulated)',
    await ctx.read(dABuf, prefill.length * 4),
    dA.data.map((v, i) => v + prefill[i]),
    tol,
  );
  if (dB)
    close(
      'gpu dB (accumulated)',
      await ctx.read(dBBuf!, dB.data.length * 4),
      dB.data.map((v, i) => v + prefillB[i]),
      tol,
    );
  close('gpu dW', g.subarray(offs.w, offs.w + w.length), cb.dw, tol);
  if (o.bias) close('gpu dBias', g.subarray(offs.bias, offs.bias + Cout), cb.db, tol);
  if (o.emb) close('gpu dEmb', (await ctx.read(dEmbBuf)).subarray(embOff, embOff + B * Cout), dEmb, tol);
  if (norm) {
    close('gpu dGamma', g.subarray(offs.gamma, offs.gamma + Cin), dGamma!, tol);
    close('gpu dBeta', g.subarray(offs.beta, offs.beta + Cin), dBeta!, tol);
  }
  for (const b of [params, aBuf, bBuf, stats, dOutBuf, grads, dEmbBuf, dABuf, dBBuf, ...Object.values(scratch)])
    b?.destroy();
}

test('conv3x3 stride 1 backward: odd non-square map, batch 2, bias', () =>
  convCase({ B: 2, C1: 5, C2: 0, H: 5, W: 7, Cout: 6, ks: 3, stride: 1, bias: true, seed: 10 }));

test('ResnetBlock conv backward: concatenated input, GroupNorm + Swish, embedding, split weight gradient', () =>
  convCase({
    B: 2,
    C1: 4,
    C2: 5,
    H: 4,
    W: 5,
    Cout: 7,
    ks: 3,
    stride: 1,
    norm: 2,
    G: 3,
    bias: true,
    emb: true,
    split: 3,
    seed: 20,
  }));

test('the same with the normalised input materialised once for the weight gradient (scratch xn)', () =>
  convCase({
    B: 2,
    C1: 4,
    C2: 5,
    H: 4,
    W: 5,
    Cout: 7,
    ks: 3,
    stride: 1,
    norm: 2,
    G: 3,
    bias: true,
    emb: true,
    xn: true,
    seed: 25,
  }));

test('with GELU instead of Swish (UNetConfig.activation): fused, and materialised once (scratch xn)', async () => {
  const o = { B: 2, C1: 4, C2: 4, H: 4, W: 5, Cout: 5, ks: 3, stride: 1, norm: 2, G: 4, bias: true } as const;
  await convCase({ ...o, emb: true, act: 'gelu', seed: 27 });
  await convCase({ ...o, xn: true, act: 'gelu', seed: 28 });
});

test('Downsample conv backward: 3x3 stride 2 on odd sizes', () =>
  convCase({ B: 2, C1: 4, C2: 0, H: 7, W: 6, Cout: 5, ks: 3, stride: 2, bias: true, seed: 30 }));

test('Upsample conv backward: nearest x2 folded into the input, gradient summed over each 2x2 block', () =>
  convCase({
    B: 2,
    C1: 3,
    C2: 0,
    H: 3,
    W: 4,
    Cout: 4,
    ks: 3,
    stride: 1,
    upsample: true,
    bias: true,
    split: 2,
    seed: 40,
  }));

test('attention qkv conv backward: 1x1 with GroupNorm (no Swish), no bias, Cout over one 64 tile', () =>
  convCase({ B: 2, C1: 6, C2: 0, H: 3, W: 5, Cout: 66, ks: 1, stride: 1, norm: 1, G: 2, xn: true, seed: 50 }));

test('res_conv backward: 1x1 over a concatenation, Cin over one 64 tile', () =>
  convCase({ B: 1, C1: 40, C2: 27, H: 2, W: 3, Cout: 3, ks: 1, stride: 1, bias: true, seed: 60 }));

// Stride 1 with rows a multiple of 4 wide: on a software device the input gradient runs as a direct conv over flipped
// weights and the weight gradient as the banded direct kernel (elsewhere the GEMM kernels, as above).
test('conv3x3 stride 1 over a concatenation, rows a multiple of 4 wide, a partial block of 4 output channels', () =>
  convCase({ B: 2, C1: 5, C2: 3, H: 6, W: 8, Cout: 7, ks: 3, stride: 1, bias: true, seed: 80 }));

test('the same with GroupNorm + Swish materialised (xn) and an embedding', () =>
  convCase({
    B: 2,
    C1: 4,
    C2: 4,
    H: 5,
    W: 12,
    Cout: 6,
    ks: 3,
    stride: 1,
    norm: 2,
    G: 4,
    bias: true,
    emb: true,
    xn: true,
    seed: 85,
  }));

test('conv1x1 stride 1, rows a multiple of 4 wide', () =>
  convCase({ B: 1, C1: 9, C2: 0, H: 3, W: 4, Cout: 5, ks: 1, stride: 1, bias: true, seed: 90 }));

test('GroupNorm + Swish then upsample (a combination the kernels allow), groups of one channel', () =>
  convCase({
    B: 1,
    C1: 3,
    C2: 2,
    H: 2,
    W: 3,
    Cout: 2,
    ks: 3,
    stride: 1,
    upsample: true,
    norm: 2,
    G: 5,
    bias: true,
    seed: 70,
  }));

test('conv backward refuses inconsistent specs with clear messages', async () => {
  const ctx = await device();
  const buf = ctx.buffer(64);
  const base: KB.ConvBackwardSpec = {
    B: 1,
    C1: 4,
    C2: 2,
    Hin: 2,
    Win: 2,
    Cout: 2,
    ks: 3,
    stride: 1,
    wOff: 0,
    bOff: -1,
  };
  const cases: [() => Promise<unknown>, RegExp][] = [
    [
      () => KB.conv2dBackwardInput(ctx, base, { params: buf, dOut: buf, dA: ctx.buffer(64) }),
      /C2 > 0 needs a dB buffer/,
    ],
    [
      () =>
        KB.conv2dBackwardInput(
          ctx,
          { ...base, ks: 5 as 3 },
          { params: buf, dOut: buf, dA: ctx.buffer(64), dB: ctx.buffer(64) },
        ),
      /kernel size must be 1 or 3/,
    ],
    [
      () =>
        KB.conv2dBackward(
          ctx,
          { ...base, norm: 2, groups: 4 },
          { params: buf, a: buf, b: buf, stats: buf, dOut: buf, grads: ctx.buffer(64) },
        ),
      /6 channels do not divide into 4 groups/,
    ],
    [
      () =>
        KB.conv2dBackward(
          ctx,
          { ...base, norm: 2, groups: 3 },
          {
            params: buf,
            a: buf,
            b: buf,
            stats: buf,
            dOut: buf,
            grads: ctx.buffer(64),
            dA: ctx.buffer(64),
            dB: ctx.buffer(64),
          },
        ),
      /needs scratch dYA, dYB and gn/,
    ],
    [
      () =>
        KB.conv2dBackwardWeight(
          ctx,
          { ...base, B: 4, Hin: 16, Win: 16 },
          { params: buf, a: buf, b: buf, dOut: buf, grads: ctx.buffer(64) },
          { split: 4 },
        ),
      /split weight gradient needs a scratch buffer/,
    ],
    [
      () => KB.conv2dBackwardInput(ctx, base, { params: buf, dOut: buf, dA: buf, dB: ctx.buffer(64) }),
      /dA and params must be different buffers/,
    ],
    [
      () =>
        KB.attentionBackward(ctx, { B: 1, C: 2, HW: 2 }, { qkv: buf, dOut: buf, dqkv: buf, rowStats: ctx.buffer(64) }),
      /dqkv and qkv must be different buffers/,
    ],
  ];
  for (const [f, re] of cases) {
    try {
      await f();
      assert.unreachable(`expected ${re}`);
    } catch (e) {
      assert.match((e as Error).message, re);
    }
  }
});

test('the residual add passes dOut through: addInto accumulates, or overwrites, with offsets and a scale', async () => {
  const ctx = await device();
  const n = 1000;
  const src = rand(n + 7, 1);
  const dst0 = rand(n + 4, 2);
  const s = ctx.upload(src);
  const d1 = ctx.upload(dst0);
  const d2 = ctx.upload(dst0);
  ctx.run([
    await KB.addInto(ctx, { n, srcOff: 7, dstOff: 4 }, { src: s, dst: d1 }),
    await KB.addInto(ctx, { n, srcOff: 7, dstOff: 4, scale: -0.5 }, { src: s, dst: d2 }, { accumulate: false }),
  ]);
  const g1 = await ctx.read(d1, (n + 4) * 4);
  const g2 = await ctx.read(d2, (n + 4) * 4);
  for (let i = 0; i < 4; i++) assert.is(g1[i], dst0[i]);
  for (let i = 0; i < n; i++) {
    assert.is(g1[4 + i], Math.fround(dst0[4 + i] + src[7 + i]));
    assert.is(g2[4 + i], Math.fround(-0.5 * src[7 + i]));
  }
});

// ------------------------------------------------------------------------------------------------------- attention

for (const [B, C, H, W, accumulate] of [
  [2, 20, 5, 7, false],
  [1, 30, 2, 5, true],
] as const) {
  test(`attention core backward B${B} C${C} ${H}x${W}${accumulate ? ' (accumulating)' : ''}: softmax backward, flash-style tiles`, async () => {
    const HW = H * W;
    const qkv = rand(B * 3 * C * HW, B * 100 + C).map((v) => v * 1.5);
    const r = rand(B * C * HW, 7 + C);
    const X = f64(qkv);
    const lossFn = () => dot(R.attentionCore(R.t4(B, 3 * C, H, W, X)).data, r);
    const want = RB.attentionCoreBackward(R.t4(B, 3 * C, H, W, X), R.t4(B, C, H, W, r));
    fdCheck('dQ/dK/dV', X, want.data, lossFn, 12, C);
    // every block gets a finite-difference look: one coordinate in each of q, k, v of the last batch element
    for (let blk = 0; blk < 3; blk++) {
      const i = ((B - 1) * 3 + blk) * C * HW + 3;
      const h = 1e-5;
      const x0 = X[i];
      X[i] = x0 + h;
      const lp = lossFn();
      X[i] = x0 - h;
      const lm = lossFn();
      X[i] = x0;
      assert.ok(Math.abs((lp - lm) / (2 * h) - want.data[i]) < 1e-6, `d${'qkv'[blk]} fd at ${i}`);
    }

    const ctx = await device();
    const prefill = rand(qkv.length, 3);
    const qb = ctx.upload(qkv);
    const db = ctx.upload(r);
    const out = ctx.upload(accumulate ? prefill : new Float32Array(qkv.length).fill(NaN));
    const rowStats = ctx.buffer(KB.attentionBackwardStatsBytes({ B, HW }));
    ctx.run(
      await KB.attentionBackward(
        ctx,
        { B, C, HW, label: 'attn' },
        { qkv: qb, dOut: db, dqkv: out, rowStats },
        { accumulate },
      ),
    );
    const got = await ctx.read(out, qkv.length * 4);
    close('gpu dqkv', got, accumulate ? want.data.map((v, i) => v + prefill[i]) : want.data, 2e-5);
    for (const b of [qb, db, out, rowStats]) b.destroy();
  });
}

// ----------------------------------------------------------------------------------------------------------- linear

for (const [actIn, act] of [[false], [true], [true, 'gelu']] as const) {
  const name = actIn ? ` with ${act === 'gelu' ? 'GELU' : 'Swish'} on the input` : '';
  test(`Linear backward${name}: dW, dB and an accumulated dIn at offsets, batch 3`, async () => {
    const B = 3;
    const Kd = 10;
    const N = 37;
    const x = rand(B * Kd, 11).map((v) => v * 2);
    const w = rand(N * Kd, 12);
    const bias = rand(N, 13);
    const r = rand(B * N, 14);
    const P = { x: f64(x), w: f64(w), bias: f64(bias) };
    const lossFn = () => dot(R.linear(P.x, B, Kd, P.w, P.bias, N, act ?? actIn), r);
    const want = RB.linearBackward(P.x, B, Kd, P.w, N, r, act ?? actIn);
    fdCheck('dIn', P.x, want.dx, lossFn);
    fdCheck('dW', P.w, want.dw, lossFn);
    fdCheck('dB', P.bias, want.db, lossFn, 3);

    const ctx = await device();
    const { buf: params, offs, n } = packParams(ctx, { w, bias }, 3);
    const inOff = 2;
    const dOutOff = 9;
    const dInOff = 5;
    const xb = ctx.upload(new Float32Array([0, 0, ...x]));
    const db = ctx.upload(new Float32Array([...new Array(dOutOff).fill(0), ...r]));
    const prefill = rand(dInOff + B * Kd, 15);
    const dIn = ctx.upload(prefill);
    const grads = ctx.upload(new Float32Array(n).fill(NaN));
    ctx.run(
      await KB.linearBackward(
        ctx,
        { B, K: Kd, N, inOff, wOff: offs.w, bOff: offs.bias, dOutOff, dInOff, actIn, act },
        { params, inp: xb, dOut: db, grads, dIn },
        { accumulate: true },
      ),
    );
    const g = await ctx.read(grads, n * 4);
    close('gpu dW', g.subarray(offs.w, offs.w + N * Kd), want.dw);
    close('gpu dB', g.subarray(offs.bias, offs.bias + N), want.db);
    const gi = await ctx.read(dIn, prefill.length * 4);
    for (let i = 0; i < dInOff; i++) assert.is(gi[i], prefill[i]);
    close(
      'gpu dIn',
      gi.subarray(dInOff),
      want.dx.map((v, i) => v + prefill[dInOff + i]),
    );
  });
}

// ------------------------------------------------------------------- a whole ResnetBlock, gradients accumulated

test('an up-path ResnetBlock (skip concatenation, noise embedding, res_conv) end to end: GPU backward vs finite differences', async () => {
  // y = conv3(swish(GN(h))) + b2 + res_conv(cat(x, skip)),  h = conv3(swish(GN(cat(x, skip)))) + b1 + Linear(t)
  // x and skip feed two consumers (block1 and res_conv): their gradients accumulate; t's comes through the Linear.
  const B = 2,
    C1 = 3,
    C2 = 5,
    H = 4,
    W = 5,
    Co = 6,
    G = 2,
    T = 4;
  const Ci = C1 + C2;
  const parts = {
    w1: rand(Co * Ci * 9, 1).map((v) => v * 0.3),
    b1: rand(Co, 2),
    g1: rand(Ci, 3).map((v) => 1 + 0.4 * v),
    be1: rand(Ci, 4),
    w2: rand(Co * Co * 9, 5).map((v) => v * 0.3),
    b2: rand(Co, 6),
    g2: rand(Co, 7).map((v) => 1 + 0.4 * v),
    be2: rand(Co, 8),
    wr: rand(Co * Ci, 9).map((v) => v * 0.5),
    br: rand(Co, 10),
    we: rand(Co * T, 11),
    bee: rand(Co, 12),
  };
  const x = rand(B * C1 * H * W, 13);
  const skip = rand(B * C2 * H * W, 14).map((v) => 2 * v - 0.4);
  const t = rand(B * T, 15);
  const r = rand(B * Co * H * W, 16);

  const P: Record<string, Float64Array> = { x: f64(x), skip: f64(skip), t: f64(t) };
  for (const [k, v] of Object.entries(parts)) P[k] = f64(v);
  const lossFn = () => {
    const cat = R.concat(R.t4(B, C1, H, W, P.x), R.t4(B, C2, H, W, P.skip));
    const e = R.linear(P.t, B, T, P.we, P.bee, Co);
    const h = R.addPerChannel(R.conv2d(R.groupNorm(cat, G, P.g1, P.be1, true), P.w1, P.b1, Co, 3), e);
    const res = R.conv2d(cat, P.wr, P.br, Co, 1);
    const y = R.add(R.conv2d(R.groupNorm(h, G, P.g2, P.be2, true), P.w2, P.b2, Co, 3), res);
    return dot(y.data, r);
  };

  const ctx = await device();
  const { buf: params, offs, n } = packParams(ctx, parts, 3);
  const xb = ctx.upload(x);
  const sb = ctx.upload(skip);
  const tb = ctx.upload(t);
  const act = (c: number) => ctx.buffer(B * c * H * W * 4);
  const hb = act(Co);
  const rb = act(Co);
  const yb = act(Co);
  const stats = ctx.buffer(2 * B * G * 2 * 4);
  const s2 = B * G * 2;
  const embOff = 3;
  const emb = ctx.buffer((embOff + B * Co) * 4);
  const conv = { B, Hin: H, Win: W, Cout: Co, stride: 1 as const, groups: G };
  const spec1: KB.ConvBackwardSpec = {
    ...conv,
    C1,
    C2,
    ks: 3,
    norm: 2,
    statsOff: 0,
    gammaOff: offs.g1,
    betaOff: offs.be1,
    wOff: offs.w1,
    bOff: offs.b1,
    embOff,
    label: 'block1',
  };
  const specR: KB.ConvBackwardSpec = { ...conv, C1, C2, ks: 1, wOff: offs.wr, bOff: offs.br, label: 'res_conv' };
  const spec2: KB.ConvBackwardSpec = {
    ...conv,
    C1: Co,
    C2: 0,
    ks: 3,
    norm: 2,
    statsOff: s2,
    gammaOff: offs.g2,
    betaOff: offs.be2,
    wOff: offs.w2,
    bOff: offs.b2,
    label: 'block2',
  };
  const fwd = [
    await K.linear(
      ctx,
      { B, K: T, N: Co, wOff: offs.we, bOff: offs.bee, outOff: embOff },
      { params, inp: tb, out: emb },
    ),
    ...(await K.groupNormStats(ctx, { B, C1, C2, HW: H * W, groups: G, statsOff: 0 }, { a: xb, b: sb, stats })),
    ...(await K.conv2d(ctx, spec1, { params, a: xb, b: sb, stats, emb, out: hb })),
    ...(await K.conv2d(ctx, specR, { params, a: xb, b: sb, out: rb })),
    ...(await K.groupNormStats(ctx, { B, C1: Co, C2: 0, HW: H * W, groups: G, statsOff: s2 }, { a: hb, stats })),
    ...(await K.conv2d(ctx, { ...spec2, hasRes: true }, { params, a: hb, stats, res: rb, out: yb })),
  ];

  const grads = ctx.upload(new Float32Array(n).fill(NaN));
  const dY = ctx.upload(r);
  const dH = act(Co);
  const dX = act(C1);
  const dS = act(C2);
  const dEmb = ctx.buffer((embOff + B * Co) * 4);
  const dT = ctx.upload(new Float32Array(B * T).fill(NaN));
  const big = KB.conv2dBackwardScratchBytes(spec1);
  const scratch = { dYA: ctx.buffer(B * Ci * H * W * 4), dYB: ctx.buffer(big.dYB), gn: ctx.buffer(big.gn) };
  const bwd = [
    // block2 (its residual input r gets dY unchanged: res_conv's dOut is dY itself)
    ...(await KB.conv2dBackward(ctx, spec2, {
      params,
      a: hb,
      stats,
      dOut: dY,
      grads,
      dA: dH,
      scratch: { dYA: scratch.dYA, gn: scratch.gn, xn: act(Co) },
    })),
    // res_conv: the first writer of dX / dSkip overwrites
    ...(await KB.conv2dBackward(ctx, specR, { params, a: xb, b: sb, dOut: dY, grads, dA: dX, dB: dS })),
    // block1: adds into dX / dSkip, writes the embedding gradient
    ...(await KB.conv2dBackward(
      ctx,
      spec1,
      { params, a: xb, b: sb, stats, dOut: dH, grads, dEmb, dA: dX, dB: dS, scratch },
      { accumulate: true },
    )),
    // the block's noise projection: Linear(t) backward from dEmb
    ...(await KB.linearBackward(
      ctx,
      { B, K: T, N: Co, wOff: offs.we, bOff: offs.bee, dOutOff: embOff },
      { params, inp: tb, dOut: dEmb, grads, dIn: dT },
    )),
  ];
  ctx.run([...fwd, ...bwd]);
  const g = await ctx.read(grads, n * 4);
  const got: Record<string, Float32Array> = {
    x: await ctx.read(dX, x.length * 4),
    skip: await ctx.read(dS, skip.length * 4),
    t: await ctx.read(dT, t.length * 4),
  };
  for (const [k, v] of Object.entries(parts)) got[k] = g.subarray(offs[k], offs[k] + v.length);
  const h = 1e-5;
  for (const [k, arr] of Object.entries(got)) {
    let scale = 1;
    for (const v of arr) scale = Math.max(scale, Math.abs(v));
    for (const i of rand(4, k.length * 7 + k.charCodeAt(0)).map((v) => Math.floor(((v + 1) / 2) * arr.length))) {
      const X = P[k];
      const x0 = X[i];
      X[i] = x0 + h;
      const lp = lossFn();
      X[i] = x0 - h;
      const lm = lossFn();
      X[i] = x0;
      const fd = (lp - lm) / (2 * h);
      assert.ok(Math.abs(arr[i] - fd) <= 5e-5 * scale, `d${k}[${i}]: gpu ${arr[i]} vs finite difference ${fd}`);
    }
  }
});

// ------------------------------------------------------------------------------------------------------------- loss

for (const kind of ['l1', 'l2'] as const) {
  for (const reduction of ['sum', 'mean'] as const) {
    test(`${kind} loss, ${reduction} reduction: value reduced on the GPU and gradient (sign(0) = 0)`, async () => {
      const n = 6001; // several partial sums, not a multiple of 256
      const pred = rand(n, 21);
      const target = rand(n, 22);
      for (let i = 0; i < n; i += 7) target[i] = pred[i]; // exact ties
      const want = RB.lossRef(pred, target, kind, reduction);
      // the reference gradient against finite differences
      const P = f64(pred);
      fdCheck('dpred', P, want.grad, () => RB.lossRef(P, target, kind, reduction).value, 4, 3);

      const ctx = await device();
      const pb = ctx.upload(new Float32Array([9, ...pred]));
      const tb = ctx.upload(target);
      const grad = ctx.buffer((n + 2) * 4);
      const partial = ctx.buffer(KB.reducePartials(n) * 4);
      const value = ctx.upload(new Float32Array([7, 7, 7, 7]));
      ctx.run(
        await KB.loss(
          ctx,
          { n, kind, reduction, predOff: 1, gradOff: 2, valueOff: 1 },
          { pred: pb, target: tb, grad, partial, value },
        ),
      );
      const v = await ctx.read(value);
      assert.ok(Math.abs(v[1] - want.value) <= 1e-5 * Math.abs(want.value), `value ${v[1]} vs ${want.value}`);
      assert.is(v[0], 7);
      assert.is(v[2], 7);
      const g = (await ctx.read(grad, (n + 2) * 4)).subarray(2);
      for (let i = 0; i < n; i++) {
        if (!(Math.abs(g[i] - want.grad[i]) <= 1e-6 * Math.max(1, Math.abs(want.grad[i])))) {
          assert.unreachable(`grad[${i}] ${g[i]} vs ${want.grad[i]}`);
        }
      }
      for (let i = 0; i < n; i += 7) assert.is(g[i], 0, 'sign(0) = 0');
    });
  }
}

test('loss refuses unknown kinds and reductions', async () => {
  const ctx = await device();
  const b = () => ctx.buffer(64);
  for (const [spec, re] of [
    [{ n: 4, kind: 'huber', reduction: 'sum' }, /unknown loss huber/],
    [{ n: 4, kind: 'l1', reduction: 'none' }, /unknown reduction none/],
    [{ n: 0, kind: 'l1', reduction: 'sum' }, /positive integer/],
  ] as const) {
    try {
      await KB.loss(ctx, spec as unknown as KB.LossSpec, {
        pred: b(),
        target: b(),
        grad: b(),
        partial: b(),
        value: b(),
      });
      assert.unreachable();
    } catch (e) {
      assert.match((e as Error).message, re);
    }
  }
});

test.after(releaseDevice);
test.run();
