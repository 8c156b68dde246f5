// Both conv2d shaders (the tiled GEMM for GPUs and the direct register-blocked one for software devices) against the
// float64 TypeScript reference, whichever the device would pick: shapes that leave partial pixel blocks (W not a
// multiple of the 4/8-pixel rows), partial channel blocks, several staged weight chunks, and every fusion.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { GpuContext } from '../engine/gpu.ts';
import * as K from '../engine/kernels.ts';
import * as R from './reference/nn-ref.ts';
import { device, rand, relErr, releaseDevice } from './helpers/device.ts';

interface Case {
  B: number; C1: number; C2: number; H: number; W: number; Cout: number; ks: 1 | 3; stride: 1 | 2;
  upsample?: boolean; norm?: 0 | 1 | 2; G?: number; bias?: boolean; emb?: boolean; res?: boolean; seed: number;
}

async function check(ctx: GpuContext, o: Case, what: string): Promise<void> {
  const { B, C1, C2, H, W, Cout, ks } = o;
  const Cin = C1 + C2;
  const a = rand(B * C1 * H * W, o.seed);
  const bIn = rand(B * C2 * H * W, o.seed + 1).map((v) => v * 2 - 0.3);
  const w = rand(Cout * Cin * ks * ks, o.seed + 2).map((v) => v * 0.3);
  const bias = rand(Cout, o.seed + 3);
  const gamma = rand(Cin, o.seed + 4).map((v) => 1 + 0.5 * v);
  const beta = rand(Cin, o.seed + 5);
  const emb = rand(B * Cout, o.seed + 6);
  const [Ho, Wo] = K.convOutSize({ Hin: H, Win: W, ks, stride: o.stride, upsample: o.upsample });
  const res = rand(B * Cout * Ho * Wo, o.seed + 7);
  // weights at an odd offset in the params buffer: no alignment may be assumed
  const pad = 3;
  const all = new Float32Array(pad + w.length + bias.length + gamma.length + beta.length);
  const wOff = pad;
  const bOff = wOff + w.length;
  const gOff = bOff + bias.length;
  const betaOff = gOff + gamma.length;
  all.set(w, wOff);
  all.set(bias, bOff);
  all.set(gamma, gOff);
  all.set(beta, betaOff);
  const params = ctx.upload(all);
  const aBuf = ctx.upload(a);
  const bBuf = C2 ? ctx.upload(bIn) : undefined;
  const stats = ctx.buffer(B * (o.G ?? 1) * 2 * 4 + 64);
  const embBuf = ctx.upload(emb);
  const resBuf = ctx.upload(res);
  const out = ctx.buffer(B * Cout * Ho * Wo * 4);
  const ds = [];
  if (o.norm) ds.push(await K.groupNormStats(ctx, { B, C1, C2, HW: H * W, groups: o.G!, statsOff: 4, label: 'gn' }, { a: aBuf, b: bBuf, stats }));
  ds.push(
    await K.conv2d(
      ctx,
      {
        B, C1, C2, Hin: H, Win: W, Cout, ks, stride: o.stride, upsample: o.upsample, norm: o.norm, groups: o.G,
        statsOff: 4, gammaOff: gOff, betaOff, wOff, bOff: o.bias ? bOff : -1, embOff: o.emb ? 0 : -1, hasRes: o.res, label: 'conv',
      },
      { params, a: aBuf, b: bBuf, stats: o.norm ? stats : undefined, emb: o.emb ? embBuf : undefined, res: o.res ? resBuf : undefined, out },
    ),
  );
  ctx.run(ds);
  const got = await ctx.read(out, B * Cout * Ho * Wo * 4);
  let x = R.t4(B, C1, H, W, a);
  if (C2) x = R.concat(x, R.t4(B, C2, H, W, bIn));
  if (o.norm) x = R.groupNorm(x, o.G!, gamma, beta, o.norm === 2);
  if (o.upsample) x = R.upsample2(x);
  let y = R.conv2d(x, w, o.bias ? bias : null, Cout, ks, o.stride);
  if (o.emb) y = R.addPerChannel(y, emb);
  if (o.res) y = R.add(y, R.t4(B, Cout, Ho, Wo, res));
  const err = relErr(got, y.data);
  for (const buf of [params, aBuf, bBuf, stats, embBuf, resBuf, out]) buf?.destroy();
  assert.ok(err < 2e-5, `${what} ${JSON.stringify(o)}: rel err ${err}`);
}

const CASES: Case[] = [
  { B: 2, C1: 5, C2: 0, H: 9, W: 13, Cout: 7, ks: 3, stride: 1, bias: true, seed: 1 },
  { B: 2, C1: 4, C2: 8, H: 6, W: 11, Cout: 9, ks: 3, stride: 1, norm: 2, G: 3, bias: true, emb: true, res: true, seed: 2 },
  { B: 1, C1: 6, C2: 0, H: 7, W: 10, Cout: 6, ks: 3, stride: 2, bias: true, seed: 3 },
  { B: 1, C1: 5, C2: 0, H: 9, W: 17, Cout: 3, ks: 3, stride: 2, norm: 2, G: 5, bias: true, seed: 4 },
  { B: 2, C1: 3, C2: 0, H: 5, W: 3, Cout: 4, ks: 3, stride: 1, upsample: true, bias: true, seed: 5 },
  { B: 1, C1: 4, C2: 2, H: 4, W: 9, Cout: 10, ks: 3, stride: 1, upsample: true, norm: 1, G: 2, res: true, seed: 6 },
  { B: 2, C1: 8, C2: 0, H: 9, W: 10, Cout: 70, ks: 1, stride: 1, norm: 1, G: 4, seed: 7 },
  { B: 1, C1: 21, C2: 19, H: 4, W: 5, Cout: 3, ks: 1, stride: 1, bias: true, seed: 8 },
  // a 19-wide map (two full 8-pixel rows and a partial one), 20 output channels (a partial channel block), a
  // concatenation of 3 + 14 channels (more than one staged weight chunk when CC is small), GroupNorm + Swish
  { B: 2, C1: 3, C2: 14, H: 5, W: 19, Cout: 20, ks: 3, stride: 1, norm: 2, G: 17, bias: true, emb: true, res: true, seed: 9 },
  { B: 1, C1: 40, C2: 0, H: 3, W: 33, Cout: 9, ks: 3, stride: 1, norm: 2, G: 8, bias: true, seed: 10 },
  // a large map and 33 output channels: the direct kernel's 16-pixel rows (a partial last one), partial channel blocks
  { B: 1, C1: 3, C2: 2, H: 64, W: 65, Cout: 33, ks: 3, stride: 1, norm: 2, G: 5, bias: true, emb: true, seed: 11 },
  // rows a multiple of 4 wide: the direct kernel's vec4 input loads (left/right borders inside vec4s)
  { B: 2, C1: 5, C2: 3, H: 6, W: 20, Cout: 12, ks: 3, stride: 1, norm: 2, G: 4, bias: true, res: true, seed: 12 },
  { B: 1, C1: 7, C2: 0, H: 5, W: 8, Cout: 5, ks: 1, stride: 1, bias: true, seed: 13 },
  { B: 1, C1: 3, C2: 0, H: 64, W: 64, Cout: 33, ks: 3, stride: 1, norm: 2, G: 3, emb: true, seed: 14 },
];

for (const kernel of ['tiled', 'direct'] as const) {
  test(`conv2d ${kernel}: every case within 2e-5 of the float64 reference`, async () => {
    const ctx = await device();
    K.setConvKernel(ctx, kernel);
    try {
      for (const c of CASES) await check(ctx, c, kernel);
    } finally {
      K.setConvKernel(ctx, undefined);
    }
  });
}

test('conv2d direct with a small block (4 pixels x 4 channels, 8 lanes, 1 staged channel, scalar loads)', async () => {
  const ctx = await device();
  K.setConvKernel(ctx, 'direct');
  Object.assign(K.DIRECT_BLOCK, { PX: 4, RN: 4, CC: 1, WG: 8, vec: false });
  try {
    for (const c of [CASES[1], CASES[3], CASES[5], CASES[8], CASES[11], CASES[12]]) await check(ctx, c, 'direct 4x4');
  } finally {
    for (const k of ['PX', 'RN', 'CC', 'WG', 'vec'] as const) delete K.DIRECT_BLOCK[k];
    K.setConvKernel(ctx, undefined);
  }
});

test('the automatic choice: direct on a software adapter, tiled on a GPU', async () => {
  const ctx = await device();
  assert.is(K.convKernelFor(ctx), ctx.adapter.isSoftware ? 'direct' : 'tiled');
});

test.after(releaseDevice);
test.run();
