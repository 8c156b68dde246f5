import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GaussianRng, rngWorkgroups, seedWords, type Seed } from '../engine/rng.ts';
import type { GpuContext } from '../engine/gpu.ts';
import { device, releaseDevice } from './helpers/device.ts';
import { boxMullerRef, fillRef, lnUnitRef, philoxRef, u01Ref } from './reference/rng-ref.ts';

let rngP: Promise<GaussianRng> | null = null;
const rng = async () => (rngP ??= device().then((ctx) => GaussianRng.create(ctx)));

async function gpuFill(
  n: number,
  o: {
    seed: Seed;
    stream?: number;
    sub?: number;
    offset?: number;
    first?: number;
    raw?: boolean;
    capacity?: number;
  } = { seed: 1 },
): Promise<Float32Array | Uint32Array> {
  const ctx = await device();
  const r = await rng();
  const cap = o.capacity ?? (o.offset ?? 0) + n;
  const out = ctx.buffer(cap * 4, 'noise');
  // Poison the buffer so untouched elements are detectable.
  ctx.write(out, new Uint32Array(cap).fill(0xdeadbeef));
  const f = o.raw ? await r.fillRaw({ out, n, ...o }) : r.fill({ out, n, ...o });
  ctx.run([f.dispatch]);
  const res = o.raw ? await ctx.readU32(out, cap * 4) : await ctx.read(out, cap * 4);
  out.destroy();
  return res;
}

// Known-answer vectors of Philox4x32-10 (Random123's kat_vectors): they pin the reference to the published generator.
test('the TS reference is Philox4x32-10 (published known-answer vectors)', () => {
  const hex = (a: number[]) => a.map((x) => x.toString(16).padStart(8, '0')).join(' ');
  assert.is(hex(philoxRef([0, 0, 0, 0], [0, 0])), '6627e8d5 e169c58d bc57ac4c 9b00dbd8');
  const f = 0xffffffff;
  assert.is(hex(philoxRef([f, f, f, f], [f, f])), '408f276d 41c83b0e a20bc7c6 6d5451fd');
  assert.is(
    hex(philoxRef([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])),
    'd16cfe09 94fdcceb 5001e420 24126ea1',
  );
});

test('GPU Philox words equal the reference bit for bit (odd n, offset, stream, sub, 64-bit seed)', async () => {
  const n = 1001; // not a multiple of 4 or of the workgroup
  const seed = 0x123456789abcdefn;
  const off = 5;
  const got = (await gpuFill(n, { seed, stream: 7, sub: 3, offset: off, raw: true, capacity: n + 9 })) as Uint32Array;
  const want = fillRef(n, seedWords(seed), 7, 3, true);
  for (let i = 0; i < off; i++) assert.is(got[i], 0xdeadbeef, `element ${i} before the offset is untouched`);
  for (let i = 0; i < n; i++) assert.is(got[off + i], want[i], `word ${i}`);
  for (let i = off + n; i < n + 9; i++) assert.is(got[i], 0xdeadbeef, `element ${i} after the end is untouched`);
  // The KAT counter through the GPU: block 0, stream 0, sub 0, key 0 gives the published zero vector.
  const zero = (await gpuFill(4, { seed: 0, raw: true })) as Uint32Array;
  assert.equal(Array.from(zero), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
});

test('GPU normals equal the reference Box-Muller of the same words, within 1e-6', async () => {
  const n = 65539;
  const got = (await gpuFill(n, { seed: 2024, stream: 11, sub: 1 })) as Float32Array;
  const want = fillRef(n, seedWords(2024), 11, 1);
  let maxErr = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i]));
    maxErr = Math.max(maxErr, e);
  }
  // The integer part is exact and ln is arithmetic (ln_unit); what is left is sqrt/cos/sin in f32 (lavapipe: at
  // most 4.8e-7 over 2^18 values, one ulp of |z| ~ 4).
  assert.ok(maxErr < 1e-6, `max relative error ${maxErr}`);
  // Box-Muller itself: u in (0,1) exactly, so the largest possible |z| is sqrt(-2 ln(2^-24)) = 5.77, never inf/NaN.
  const [a] = boxMullerRef(0, 0);
  assert.ok(Number.isFinite(a) && Math.abs(a) < 5.8 && Math.abs(a) > 5.7);
});

test("the shader's ln is accurate: |ln_unit(u) - ln u| <= 3 ulp of ln u over the whole (0, 1) grid", () => {
  let worst = 0;
  for (let k = 0; k < 1 << 23; k += 997) {
    for (const kk of [k, (1 << 23) - 1 - k]) {
      const u = u01Ref(kk << 9);
      const want = Math.log(u);
      const ulp = 2 ** (Math.floor(Math.log2(Math.abs(want))) - 23);
      worst = Math.max(worst, Math.abs(lnUnitRef(u) - want) / ulp);
    }
  }
  assert.ok(worst <= 3, `worst error ${worst} ulp`);
});

function stats(x: ArrayLike<number>) {
  const n = x.length;
  let s = 0;
  for (let i = 0; i < n; i++) s += x[i];
  const mean = s / n;
  let m2 = 0;
  let m3 = 0;
  let m4 = 0;
  for (let i = 0; i < n; i++) {
    const d = x[i] - mean;
    m2 += d * d;
    m3 += d * d * d;
    m4 += d * d * d * d;
  }
  m2 /= n;
  m3 /= n;
  m4 /= n;
  return { mean, variance: m2, skew: m3 / m2 ** 1.5, kurtosis: m4 / (m2 * m2) };
}

function corr(a: ArrayLike<number>, b: ArrayLike<number>, lag = 0): number {
  const n = Math.min(a.length, b.length) - lag;
  let sa = 0;
  let sb = 0;
  for (let i = 0; i < n; i++) {
    sa += a[i];
    sb += b[i + lag];
  }
  const ma = sa / n;
  const mb = sb / n;
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < n; i++) {
    const da = a[i] - ma;
    const db = b[i + lag] - mb;
    ab += da * db;
    aa += da * da;
    bb += db * db;
  }
  return ab / Math.sqrt(aa * bb);
}

// Tolerances: 5 standard errors of each statistic for N iid standard normals (mean 1/sqrt(N), variance sqrt(2/N),
// skewness sqrt(6/N), kurtosis sqrt(24/N), correlation 1/sqrt(N), a proportion sqrt(p(1-p)/N)). The data are a
// fixed function of the seed, so the test is deterministic; 5 sigma only guards against a pathological seed.
const N = 1 << 18;
const se = (v: number) => 5 * Math.sqrt(v / N);

test('mean, variance, skewness, kurtosis and tail mass of 2^18 normals', async () => {
  const z = (await gpuFill(N, { seed: 7, stream: 0 })) as Float32Array;
  const st = stats(z);
  assert.ok(Math.abs(st.mean) < se(1), `mean ${st.mean} (tolerance ${se(1)})`);
  assert.ok(Math.abs(st.variance - 1) < se(2), `variance ${st.variance} (tolerance ${se(2)})`);
  assert.ok(Math.abs(st.skew) < se(6), `skewness ${st.skew}`);
  assert.ok(Math.abs(st.kurtosis - 3) < se(24), `kurtosis ${st.kurtosis}`);
  const frac = (pred: (v: number) => boolean) => Array.prototype.filter.call(z, pred).length / N;
  for (const [k, p] of [
    [1, 0.6826894921370859],
    [2, 0.9544997361036416],
    [3, 0.9973002039367398],
  ] as const) {
    const f = frac((v) => Math.abs(v) < k);
    assert.ok(Math.abs(f - p) < se(p * (1 - p)), `P(|z| < ${k}) = ${f}, want ${p}`);
  }
  // Half above zero in each Box-Muller lane (lanes 0..3 come from different formulas: r cos, r sin).
  for (let lane = 0; lane < 4; lane++) {
    let pos = 0;
    for (let i = lane; i < N; i += 4) pos += z[i] > 0 ? 1 : 0;
    const f = pos / (N / 4);
    assert.ok(Math.abs(f - 0.5) < 5 * Math.sqrt(0.25 / (N / 4)), `lane ${lane}: P(z > 0) = ${f}`);
  }
  for (const v of z) assert.ok(Number.isFinite(v) && Math.abs(v) < 5.8);
});

test('neighbours, streams, subs and seeds are uncorrelated', async () => {
  const a = (await gpuFill(N, { seed: 7, stream: 0 })) as Float32Array;
  const tol = 5 / Math.sqrt(N);
  for (const lag of [1, 2, 3, 4, 5, 8]) {
    const c = corr(a, a, lag);
    assert.ok(Math.abs(c) < tol, `lag ${lag} correlation ${c}`);
  }
  // The two members of a Box-Muller pair: r cos and r sin are uncorrelated, and so are their squares (independent).
  const even = a.filter((_, i) => i % 2 === 0);
  const odd = a.filter((_, i) => i % 2 === 1);
  assert.ok(Math.abs(corr(even, odd)) < 5 / Math.sqrt(N / 2));
  const sq = (x: Float32Array) => x.map((v) => v * v);
  assert.ok(Math.abs(corr(sq(even), sq(odd))) < 5 / Math.sqrt(N / 2), 'squares of a pair');
  for (const other of [{ stream: 1 }, { stream: 0, sub: 1 }, { seed: 8 }, { stream: 0x10000 }]) {
    const b = (await gpuFill(N, { seed: 7, stream: 0, ...other })) as Float32Array;
    const c = corr(a, b);
    assert.ok(Math.abs(c) < tol, `${JSON.stringify(other)}: correlation ${c}`);
    let same = 0;
    for (let i = 0; i < N; i++) same += a[i] === b[i] ? 1 : 0;
    assert.ok(same < 10, `${JSON.stringify(other)}: ${same} identical values`);
  }
});

test('same seed, same noise (also across dispatch shapes); different seed, different noise', async () => {
  const x = (await gpuFill(5000, { seed: 99, stream: 3 })) as Float32Array;
  const y = (await gpuFill(5000, { seed: 99, stream: 3 })) as Float32Array;
  assert.equal(Array.from(x), Array.from(y));
  // A shorter fill is a prefix of a longer one; a fill at an offset is the same values moved.
  const z = (await gpuFill(777, { seed: 99, stream: 3, offset: 13, capacity: 800 })) as Float32Array;
  for (let i = 0; i < 777; i++) assert.is(z[13 + i], x[i]);
  // A fill from value `first` on is that stretch of the stream: chunks drawn this way make the one fill exactly.
  const c = (await gpuFill(1000, { seed: 99, stream: 3, first: 2400 })) as Float32Array;
  for (let i = 0; i < 1000; i++) assert.is(c[i], x[2400 + i]);
  await gpuFill(8, { seed: 1, first: 6 }).then(
    () => assert.unreachable('first: 6 was accepted'),
    (e) => assert.match((e as Error).message, /the first value drawn must be a multiple of 4/),
  );
  const w = (await gpuFill(5000, { seed: 100, stream: 3 })) as Float32Array;
  let diff = 0;
  for (let i = 0; i < 5000; i++) diff += x[i] !== w[i] ? 1 : 0;
  assert.ok(diff > 4990, `only ${diff} of 5000 differ`);
  // Seeds that differ only in the high word differ too.
  const hi = (await gpuFill(16, { seed: 99n + (1n << 40n), stream: 3 })) as Float32Array;
  assert.ok(hi.some((v, i) => v !== x[i]));
});

test('a GPU-side stream table: one recorded fill + advance replayed gives stream 0, 1, 2, ...', async () => {
  const ctx: GpuContext = await device();
  const r = await rng();
  const n = 300;
  const table = ctx.upload(new Uint32Array([0, 5, 0, 0])); // slot 1 starts at 5
  const out = ctx.buffer(n * 4 * 3, 'noise3');
  const fills = [0, 1, 2].map((k) =>
    r.fill({ out, n, offset: k * n, seed: 4, stream: 10, streamTable: { buffer: table, slot: 1 } }),
  );
  const adv = await r.advance(table, 1);
  // Step k: fill k reads stream 10 + 5 + k, then the counter advances.
  ctx.run([fills[0].dispatch, adv, fills[1].dispatch, adv, fills[2].dispatch, adv]);
  const got = await ctx.read(out, n * 4 * 3);
  const counter = await ctx.readU32(table, 16);
  assert.is(counter[1], 8);
  for (let k = 0; k < 3; k++) {
    const want = (await gpuFill(n, { seed: 4, stream: 15 + k })) as Float32Array;
    for (let i = 0; i < n; i++) assert.is(got[k * n + i], want[i], `step ${k} element ${i}`);
  }
  // Counting down wraps: 0xffffffff adds -1.
  ctx.run([await r.advance(table, 1, 0xffffffff)]);
  assert.is((await ctx.readU32(table, 16))[1], 7);
  // setStream / setSeed rewrite a recorded fill's uniform.
  const f = r.fill({ out, n, seed: 1, stream: 0 });
  f.setSeed(4);
  f.setStream(16);
  ctx.run([f.dispatch]);
  const again = await ctx.read(out, n * 4);
  const want16 = (await gpuFill(n, { seed: 4, stream: 16 })) as Float32Array;
  assert.equal(Array.from(again), Array.from(want16));
  table.destroy();
  out.destroy();
});

test('bad arguments are refused with clear messages; big fills use a 2D grid', async () => {
  const ctx = await device();
  const r = await rng();
  const out = ctx.buffer(64, 'small');
  assert.throws(() => r.fill({ out, n: 17, seed: 1 }), /overruns/);
  assert.throws(() => r.fill({ out, n: 4, seed: -1 }), /seed must be/);
  assert.throws(() => r.fill({ out, n: 4, seed: 1.5 }), /seed must be/);
  assert.throws(() => r.fill({ out, n: 4, seed: 1n << 64n }), /seed must be from 0 to 2\^64-1/);
  assert.throws(() => r.fill({ out, n: 4, seed: 1, stream: -2 }), /stream must be/);
  assert.equal(seedWords(0x1_0000_0002), [2, 1]);
  assert.equal(rngWorkgroups(256 * 65535), [65535, 1]);
  const [x, y] = rngWorkgroups(256 * 65535 + 1);
  assert.ok(x <= 65535 && y === 2 && x * y * 256 >= 256 * 65535 + 1);
  out.destroy();
});

test.after(releaseDevice);
test.run();
