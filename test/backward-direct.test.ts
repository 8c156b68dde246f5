// The software device's direct backward kernels for stride-2 and upsampled convs (engine/kernels-backward.ts
// stridedInputGradient / stridedWeightGradient, shaders/conv2d_backward_direct.ts) against the float64 reference
// backward (test/reference/nn-backward-ref.ts, itself checked against finite differences in backward.test.ts), and
// its per-channel bias / embedding sums (channelSumDirectWgsl) against plain sums.
// The direct conv kernel is forced, so these run the direct path on any device. Shapes vary what the kernels' blocks
// depend on: odd sizes (partial pixel blocks, stride-2 maps whose last input row/column has no output), rows of the
// output gradient a multiple of 4 wide or not (vec4 or scalar reads), input channels under, at and across a block
// (a block spanning the concatenation's boundary), output channels not a multiple of the block, batch 2, 1x1 and 3x3.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as K from '../engine/kernels.ts';
import * as KB from '../engine/kernels-backward.ts';
import * as R from './reference/nn-ref.ts';
import * as RB from './reference/nn-backward-ref.ts';
import { device, rand, relErr, releaseDevice } from './helpers/device.ts';

const f64 = (a: ArrayLike<number>) => Float64Array.from(a as ArrayLike<number>);

function close(name: string, got: ArrayLike<number>, want: ArrayLike<number>, tol = 2e-5): void {
  const e = relErr(got, want);
  assert.ok(e < tol, `${name}: rel err ${e}`);
}

interface Case {
  B: number;
  C1: number;
  C2: number;
  H: number;
  W: number;
  Cout: number;
  ks: 1 | 3;
  mode: 'stride2' | 'upsample';
  norm?: 0 | 2;
  G?: number;
  seed: number;
}

async function run(o: Case, accumulate: boolean): Promise<void> {
  const { B, C1, C2, H, W, Cout, ks } = o;
  const Cin = C1 + C2;
  const stride = o.mode === 'stride2' ? 2 : 1;
  const upsample = o.mode === 'upsample';
  const norm = o.norm ?? 0;
  const G = o.G ?? 1;
  const a = rand(B * C1 * H * W, o.seed);
  const bIn = rand(B * C2 * H * W, o.seed + 1).map((v) => 1.5 * v + 0.2);
  const w = rand(Cout * Cin * ks * ks, o.seed + 2).map((v) => v * 0.4);
  const gamma = rand(Cin, o.seed + 3).map((v) => 1 + 0.5 * v);
  const beta = rand(Cin, o.seed + 4);
  const [Ho, Wo] = K.convOutSize({ Hin: H, Win: W, ks, stride, upsample });
  const g = rand(B * Cout * Ho * Wo, o.seed + 5);

  // the reference: dOut = g through the forward conv's input (concatenation, GroupNorm + Swish, upsampling)
  let x = R.t4(B, C1, H, W, f64(a));
  if (C2) x = R.concat(x, R.t4(B, C2, H, W, f64(bIn)));
  if (norm) x = R.groupNorm(x, G, f64(gamma), f64(beta), true);
  if (upsample) x = R.upsample2(x);
  const ref = RB.conv2dBackward(x, f64(w), Cout, ks, stride, R.t4(B, Cout, Ho, Wo, f64(g)));
  const dx = upsample ? RB.upsample2Backward(ref.dx) : ref.dx;
  const [dA, dB] = C2 ? RB.splitChannels(dx, C1) : [dx, null];

  const ctx = (await device()).withOptions({ convKernel: 'direct' });
  {
    const pre = 5; // nothing at offset 0
    const params = new Float32Array(pre + w.length + 2 * Cin);
    params.set(w, pre);
    params.set(gamma, pre + w.length);
    params.set(beta, pre + w.length + Cin);
    const pb = ctx.upload(params);
    const ab = ctx.upload(a);
    const bb = C2 ? ctx.upload(bIn) : undefined;
    const dOut = ctx.upload(g);
    const statsOff = 2;
    const stats = ctx.buffer((statsOff + B * G * 2) * 4);
    const spec: KB.ConvBackwardSpec = {
      B,
      C1,
      C2,
      Hin: H,
      Win: W,
      Cout,
      ks,
      stride,
      upsample,
      wOff: pre,
      bOff: -1,
      label: `${o.mode} conv`,
      norm,
      groups: G,
      statsOff,
      gammaOff: pre + w.length,
      betaOff: pre + w.length + Cin,
    };
    const fillA = rand(B * C1 * H * W, o.seed + 6);
    const fillB = rand(B * C2 * H * W, o.seed + 7);
    const fillW = rand(params.length, o.seed + 8);
    const dAb = ctx.upload(accumulate ? fillA : fillA.map(() => NaN));
    const dBb = C2 ? ctx.upload(accumulate ? fillB : fillB.map(() => NaN)) : undefined;
    const grads = ctx.upload(accumulate ? fillW : fillW.map(() => NaN));
    const xn = norm ? ctx.buffer(B * Cin * H * W * 4) : undefined;
    const ds = [];
    if (norm)
      ds.push(
        ...(await K.groupNormStats(
          ctx,
          { B, C1, C2, HW: H * W, groups: G, statsOff, label: 'gn' },
          { a: ab, b: bb, stats },
        )),
      );
    if (!norm)
      ds.push(...(await KB.conv2dBackwardInput(ctx, spec, { params: pb, dOut, dA: dAb, dB: dBb }, { accumulate })));
    ds.push(
      ...(await KB.conv2dBackwardWeight(
        ctx,
        spec,
        { params: pb, a: ab, b: bb, stats: norm ? stats : undefined, dOut, grads, xn },
        { accumulate },
      )),
    );
    ctx.run(ds);
    const plus = (want: ArrayLike<number>, prev: Float32Array, off = 0) =>
      Array.from(want, (v, i) => v + (accumulate ? prev[off + i] : 0));
    const gw = await ctx.read(grads, params.length * 4);
    close('dW', gw.subarray(pre, pre + w.length), plus(ref.dw, fillW, pre));
    if (!accumulate)
      for (const i of [0, pre + w.length]) assert.ok(Number.isNaN(gw[i]), `grads[${i}] outside dW was written`);
    if (!norm) {
      close('dA', await ctx.read(dAb, fillA.length * 4), plus(dA.data, fillA));
      if (dB) close('dB', await ctx.read(dBb!, fillB.length * 4), plus(dB.data, fillB));
    }
    for (const buf of [pb, ab, bb, dOut, stats, dAb, dBb, grads, xn]) buf?.destroy();
  }
}

const cases: [string, Case][] = [
  [
    '3x3 stride 2, odd sizes, concatenation across a channel block, scalar reads',
    { B: 2, C1: 5, C2: 6, H: 7, W: 9, Cout: 6, ks: 3, mode: 'stride2', seed: 100 },
  ],
  [
    '3x3 stride 2, even sizes (last input row and column unread), vec4 reads, 9 output channels',
    { B: 1, C1: 3, C2: 0, H: 16, W: 16, Cout: 9, ks: 3, mode: 'stride2', seed: 110 },
  ],
  [
    '3x3 stride 2, a map smaller than one block',
    { B: 2, C1: 8, C2: 0, H: 3, W: 2, Cout: 4, ks: 3, mode: 'stride2', seed: 115 },
  ],
  [
    "3x3 stride 2, concatenation, rows a multiple of 4 (vec4 writes) but not the output gradient's",
    { B: 2, C1: 4, C2: 3, H: 6, W: 12, Cout: 10, ks: 3, mode: 'stride2', seed: 117 },
  ],
  [
    '3x3 stride 2, 60 output channels (two staged chunks of weights)',
    { B: 1, C1: 2, C2: 0, H: 5, W: 5, Cout: 60, ks: 3, mode: 'stride2', seed: 118 },
  ],
  ['1x1 stride 2 over a concatenation', { B: 2, C1: 4, C2: 2, H: 5, W: 6, Cout: 3, ks: 1, mode: 'stride2', seed: 120 }],
  [
    '3x3 upsampled, concatenation, odd width (scalar reads)',
    { B: 2, C1: 3, C2: 4, H: 3, W: 5, Cout: 5, ks: 3, mode: 'upsample', seed: 130 },
  ],
  [
    '3x3 upsampled, 9 input channels, rows of 8 pixels (vec4 reads), output channels over two staged chunks',
    { B: 1, C1: 9, C2: 0, H: 6, W: 10, Cout: 11, ks: 3, mode: 'upsample', seed: 140 },
  ],
  [
    '3x3 upsampled, rows of 8 pixels (vec4 reads and writes), 3 output channels',
    { B: 2, C1: 6, C2: 0, H: 5, W: 8, Cout: 3, ks: 3, mode: 'upsample', seed: 145 },
  ],
  [
    '1x1 upsampled over a concatenation',
    { B: 2, C1: 2, C2: 3, H: 4, W: 3, Cout: 6, ks: 1, mode: 'upsample', seed: 150 },
  ],
];

for (const [name, c] of cases) {
  for (const accumulate of [false, true]) {
    test(`direct backward, ${name}, B${c.B} ${c.C1}${c.C2 ? `+${c.C2}` : ''}->${c.Cout} ${c.H}x${c.W}${accumulate ? ', accumulating' : ''}`, () =>
      run(c, accumulate));
  }
}

test('direct weight gradient of an upsampled conv over GroupNorm + Swish, materialised into xn', () =>
  run({ B: 2, C1: 4, C2: 2, H: 4, W: 4, Cout: 5, ks: 3, mode: 'upsample', norm: 2, G: 3, seed: 160 }, true));

for (const [HW, accumulate] of [
  [12, false],
  [7, true],
] as const) {
  test(`direct channel sums (bias and embedding gradients), HW ${HW}${accumulate ? ', accumulating' : ''}`, async () => {
    const B = 2,
      C = 5,
      bOff = 3,
      embOff = 2;
    const g = rand(B * C * HW, HW);
    const bias = new Float64Array(C);
    const emb = new Float64Array(B * C);
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < C; c++) {
        for (let i = 0; i < HW; i++) emb[b * C + c] += g[(b * C + c) * HW + i];
        bias[c] += emb[b * C + c];
      }
    }
    const ctx = (await device()).withOptions({ convKernel: 'direct' });
    {
      const fillG = rand(bOff + C + 2, 7);
      const fillE = rand(embOff + B * C + 1, 8);
      const dOut = ctx.upload(g);
      const grads = ctx.upload(fillG);
      const dEmb = ctx.upload(fillE);
      ctx.run([
        await KB.channelSumBackward(
          ctx,
          { B, C, HW, bOff, embOff, label: 'bias' },
          { dOut, grads, dEmb },
          { accumulate },
        ),
      ]);
      const gg = await ctx.read(grads, fillG.length * 4);
      const ge = await ctx.read(dEmb, fillE.length * 4);
      close(
        'dBias',
        gg.subarray(bOff, bOff + C),
        Array.from(bias, (v, i) => v + (accumulate ? fillG[bOff + i] : 0)),
        1e-6,
      );
      close(
        'dEmb',
        ge.subarray(embOff, embOff + B * C),
        Array.from(emb, (v, i) => v + (accumulate ? fillE[embOff + i] : 0)),
        1e-6,
      );
      for (const i of [0, bOff - 1, bOff + C, bOff + C + 1]) assert.is(gg[i], fillG[i], `grads[${i}] untouched`);
      for (const i of [0, embOff - 1, embOff + B * C]) assert.is(ge[i], fillE[i], `dEmb[${i}] untouched`);
      for (const buf of [dOut, grads, dEmb]) buf.destroy();
    }
  });
}

test.after(releaseDevice);
test.run();
