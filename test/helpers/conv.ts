// The fused conv's test setup, shared by kernels.test.ts, conv-variants.test.ts and backward.test.ts: a case's shape
// and fusions, the parameters packed into one buffer, and one forward run on the device against the float64
// reference.
import * as assert from 'uvu/assert';
import type { GpuContext } from '../../engine/gpu.ts';
import * as K from '../../engine/kernels.ts';
import * as R from '../reference/nn-ref.ts';
import { rand, relErr } from './device.ts';

/** A conv of cat(A [B, C1, H, W], B [B, C2, H, W]) to Cout channels, with the fusions a U-Net conv may have. */
export interface ConvCase {
  B: number;
  C1: number;
  C2: number;
  H: number;
  W: number;
  Cout: number;
  ks: 1 | 3;
  stride: 1 | 2;
  upsample?: boolean;
  norm?: 0 | 1 | 2;
  G?: number;
  bias?: boolean;
  emb?: boolean;
  res?: boolean;
  /** the test data's seed: input A from seed, B from seed + 1, ... */
  seed: number;
}

/** Named arrays packed into one params buffer after `pad` unused values (to exercise the offsets); their offsets. */
export function packParams(ctx: GpuContext, parts: Record<string, Float32Array>, pad = 0) {
  const offs: Record<string, number> = {};
  let n = pad;
  for (const [k, v] of Object.entries(parts)) {
    offs[k] = n;
    n += v.length;
  }
  const all = new Float32Array(Math.max(n, 4));
  for (const [k, v] of Object.entries(parts)) all.set(v, offs[k]);
  return { buf: ctx.upload(all, 'params'), offs, n };
}

/**
 * Run case o's GroupNorm statistics (when normalised) and conv on ctx; return the relative error against the float64
 * reference (`exact`) and against the same reference with every operand (normalised input and weight) rounded to f16,
 * as the mixed kernels do (`f16`). `layout` varies what each test file exercises: input B's values
 * (v * bScale + bShift of the random ones), the parameters' offset in their buffer and the statistics' offset.
 */
export async function runConvCase(
  ctx: GpuContext,
  o: ConvCase,
  layout: { bScale: number; bShift: number; pad: number; statsOff: number },
): Promise<{ exact: number; f16: number }> {
  const { B, C1, C2, H, W, Cout, ks } = o;
  const Cin = C1 + C2;
  const a = rand(B * C1 * H * W, o.seed);
  const bIn = rand(B * C2 * H * W, o.seed + 1).map((v) => v * layout.bScale + layout.bShift);
  const w = rand(Cout * Cin * ks * ks, o.seed + 2).map((v) => v * 0.3);
  const bias = rand(Cout, o.seed + 3);
  const gamma = rand(Cin, o.seed + 4).map((v) => 1 + 0.5 * v);
  const beta = rand(Cin, o.seed + 5);
  const emb = rand(B * Cout, o.seed + 6);
  const [Ho, Wo] = K.convOutSize({ Hin: H, Win: W, ks, stride: o.stride, upsample: o.upsample });
  const res = rand(B * Cout * Ho * Wo, o.seed + 7);
  const { buf: params, offs } = packParams(ctx, { w, bias, gamma, beta }, layout.pad);
  const aBuf = ctx.upload(a);
  const bBuf = C2 ? ctx.upload(bIn) : undefined;
  const stats = ctx.buffer(B * (o.G ?? 1) * 2 * 4 + 64);
  const embBuf = ctx.upload(emb);
  const resBuf = ctx.upload(res);
  const out = ctx.buffer(B * Cout * Ho * Wo * 4);
  const { statsOff } = layout;
  const ds = [];
  if (o.norm)
    ds.push(
      ...(await K.groupNormStats(
        ctx,
        { B, C1, C2, HW: H * W, groups: o.G!, statsOff, label: 'gn' },
        { a: aBuf, b: bBuf, stats },
      )),
    );
  ds.push(
    ...(await K.conv2d(
      ctx,
      {
        B,
        C1,
        C2,
        Hin: H,
        Win: W,
        Cout,
        ks,
        stride: o.stride,
        upsample: o.upsample,
        norm: o.norm,
        groups: o.G,
        statsOff,
        gammaOff: offs.gamma,
        betaOff: offs.beta,
        wOff: offs.w,
        bOff: o.bias ? offs.bias : -1,
        embOff: o.emb ? 0 : -1,
        hasRes: o.res,
        label: 'conv',
      },
      {
        params,
        a: aBuf,
        b: bBuf,
        stats: o.norm ? stats : undefined,
        emb: o.emb ? embBuf : undefined,
        res: o.res ? resBuf : undefined,
        out,
      },
    )),
  );
  ctx.run(ds);
  const got = await ctx.read(out, B * Cout * Ho * Wo * 4);
  let x = R.t4(B, C1, H, W, a);
  if (C2) x = R.concat(x, R.t4(B, C2, H, W, bIn));
  if (o.norm) x = R.groupNorm(x, o.G!, gamma, beta, o.norm === 2);
  if (o.upsample) x = R.upsample2(x);
  const finish = (x: R.T4, w: ArrayLike<number>) => {
    let y = R.conv2d(x, w, o.bias ? bias : null, Cout, ks, o.stride);
    if (o.emb) y = R.addPerChannel(y, emb);
    if (o.res) y = R.add(y, R.t4(B, Cout, Ho, Wo, res));
    assert.equal([y.H, y.W], [Ho, Wo]);
    return relErr(got, y.data);
  };
  const exact = finish(x, w);
  const f16 = finish(R.mapT4(x, R.roundF16), Array.from(w, R.roundF16));
  for (const buf of [params, aBuf, bBuf, stats, embBuf, resBuf, out]) buf?.destroy();
  return { exact, f16 };
}
