import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors, toFloat32 } from '../weights-format/index.ts';
import {
  betaSchedule,
  formatSchedule,
  makeSchedule,
  parseSchedule,
  REFERENCE_BUFFER_NAMES,
  scheduleTables,
  SCHEDULE_KINDS,
} from '../engine/schedule.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const golden = (p: string) => readSafetensors(new Uint8Array(readFileSync(path.join(root, 'test/fixtures/golden', p))));

/** |a-b| <= tol * max(1e-300, |b|) element by element, with the index in the message. */
function close(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
  assert.is(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    assert.ok(d <= tol * Math.abs(b[i]) || d === 0, `${what}[${i}]: ${a[i]} vs ${b[i]} (rel ${d / Math.abs(b[i])})`);
  }
}

// Independent formulas, written from the definitions (not numpy's linspace algorithm).
const lin = (a: number, b: number, n: number) =>
  Array.from({ length: n }, (_, i) => (n === 1 ? a : a + ((b - a) * i) / (n - 1)));

// make_beta_schedule(kind, 7, 1e-4, 2e-2) of the reference (numpy 1.24 / torch 1.13 float64), printed with repr.
const REFERENCE_7: Record<string, number[]> = {
  linear: [
    0.0001, 0.003416666666666667, 0.006733333333333334, 0.01005, 0.013366666666666667, 0.016683333333333335, 0.02,
  ],
  quad: [
    0.0001, 0.001017837100659193, 0.0028952060277213755, 0.005732106781186546, 0.009528539361054708,
    0.014284503767325858, 0.02,
  ],
  warmup10: [0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02],
  warmup50: [0.0001, 0.01005, 0.02, 0.02, 0.02, 0.02, 0.02],
  const: [0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02],
  jsd: [0.14285714285714285, 0.16666666666666666, 0.2, 0.25, 0.3333333333333333, 0.5, 1.0],
  cosine: [
    0.05410743200964252, 0.14910114146390885, 0.24906322194823105, 0.3653244841017592, 0.5164008067544463,
    0.7371890984026362, 0.999,
  ],
};

test('every kind equals the reference implementation run in numpy/torch (bit for bit; cosine within 1e-14)', () => {
  for (const [kind, want] of Object.entries(REFERENCE_7)) {
    const got = betaSchedule({ schedule: kind, n_timestep: 7, linear_start: 1e-4, linear_end: 2e-2 });
    if (kind === 'cosine')
      close(got, want, 1e-14, kind); // cos may differ by an ulp between libms
    else assert.equal(Array.from(got), want, kind);
  }
});

test('linear, quad, const, jsd and warmup betas match closed forms', () => {
  close(
    betaSchedule({ schedule: 'linear', n_timestep: 12, linear_start: 1e-4, linear_end: 0.3 }),
    lin(1e-4, 0.3, 12),
    1e-14,
    'linear',
  );
  close(
    betaSchedule({ schedule: 'linear', n_timestep: 2000, linear_start: 1e-6, linear_end: 1e-2 }),
    lin(1e-6, 1e-2, 2000),
    1e-12,
    'linear2000',
  );
  const q = betaSchedule({ schedule: 'quad', n_timestep: 7, linear_start: 1e-4, linear_end: 0.02 });
  close(
    q,
    lin(0.01, Math.sqrt(0.02), 7).map((x) => x * x),
    1e-14,
    'quad',
  );
  assert.ok(Math.abs(q[0] - 1e-4) < 1e-18 && Math.abs(q[6] - 0.02) < 1e-17, 'quad end points');
  close(
    betaSchedule({ schedule: 'const', n_timestep: 5, linear_start: 1e-4, linear_end: 0.05 }),
    [0.05, 0.05, 0.05, 0.05, 0.05],
    0,
    'const',
  );
  close(betaSchedule({ schedule: 'jsd', n_timestep: 4 }), [1 / 4, 1 / 3, 1 / 2, 1], 1e-15, 'jsd');
  // warmup10 over 25 steps: int(2.5) = 2 warm-up entries linspace(start, end, 2) = [start, end], then end.
  const w10 = betaSchedule({ schedule: 'warmup10', n_timestep: 25, linear_start: 1e-4, linear_end: 0.02 });
  close(w10, [1e-4, ...new Array(24).fill(0.02)], 1e-15, 'warmup10');
  // warmup50 over 9 steps: int(4.5) = 4 entries linspace(1e-4, 0.02, 4), then 0.02.
  const w50 = betaSchedule({ schedule: 'warmup50', n_timestep: 9, linear_start: 1e-4, linear_end: 0.02 });
  close(w50, [...lin(1e-4, 0.02, 4), 0.02, 0.02, 0.02, 0.02, 0.02], 1e-14, 'warmup50');
});

test('cosine betas: 1 - f(t+1)/f(t) with f(t) = cos^2((t/T + s)/(1 + s) pi/2), clamped at 0.999', () => {
  const T = 10;
  const s = 8e-3;
  const f = (t: number) => Math.cos(((t / T + s) / (1 + s)) * (Math.PI / 2)) ** 2;
  const want = Array.from({ length: T }, (_, t) => Math.min(1 - f(t + 1) / f(t), 0.999));
  const got = betaSchedule({ schedule: 'cosine', n_timestep: T });
  close(got, want, 1e-12, 'cosine');
  assert.is(got[T - 1], 0.999, 'the last beta is clamped'); // f(T) = cos^2(pi/2) ~ 0
  for (let i = 1; i < T; i++) assert.ok(got[i] > got[i - 1], 'cosine betas increase');
});

test('tables follow their definitions (gamma = cumprod(1 - beta), posterior coefficients)', () => {
  const betas = [0.1, 0.2, 0.05, 0.5];
  const t = scheduleTables(betas);
  let g = 1;
  for (let i = 0; i < betas.length; i++) {
    const gp = g;
    g *= 1 - betas[i];
    const b = betas[i];
    const eq = (x: number, y: number, name: string) =>
      assert.ok(Math.abs(x - y) <= 1e-15 * Math.max(1, Math.abs(y)), `${name}[${i}]: ${x} vs ${y}`);
    eq(t.alphas[i], 1 - b, 'alphas');
    eq(t.gammas[i], g, 'gammas');
    eq(t.gammasPrev[i], gp, 'gammasPrev');
    eq(t.sqrtGamma[i], Math.sqrt(g), 'sqrtGamma');
    eq(t.sqrtGammaPrev[i + 1], Math.sqrt(g), 'sqrtGammaPrev');
    eq(t.sqrtRecipGamma[i] * t.sqrtGamma[i], 1, 'sqrtRecipGamma');
    eq(t.sqrtRecipm1Gamma[i] ** 2, 1 / g - 1, 'sqrtRecipm1Gamma');
    eq(t.posteriorVariance[i], (b * (1 - gp)) / (1 - g), 'posteriorVariance');
    eq(t.posteriorMeanCoef1[i], (b * Math.sqrt(gp)) / (1 - g), 'coef1');
    eq(t.posteriorMeanCoef2[i], ((1 - gp) * Math.sqrt(1 - b)) / (1 - g), 'coef2');
    // Noise-free consistency: with y_t = sqrt(gamma_t) x0 the posterior mean is sqrt(gamma_{t-1}) x0.
    eq(t.posteriorMeanCoef1[i] + t.posteriorMeanCoef2[i] * Math.sqrt(g), Math.sqrt(gp), 'coef1 + coef2 sqrt(gamma)');
    assert.ok(t.posteriorVariance[i] <= b + 1e-18, 'posterior variance <= beta');
  }
  assert.is(t.sqrtGammaPrev.length, 5);
  assert.is(t.sqrtGammaPrev[0], 1);
  // Step 0: gamma_prev = 1, so the posterior variance is 0 and its log is clipped to log(1e-20).
  assert.is(t.posteriorVariance[0], 0);
  assert.ok(Math.abs(t.posteriorLogVarianceClipped[0] - Math.log(1e-20)) < 1e-12);
  assert.ok(Math.abs(t.posteriorLogVarianceClipped[2] - Math.log(t.posteriorVariance[2])) < 1e-15);
});

test('the golden 12-step schedule: betas and every buffer of the reference checkpoint', () => {
  const spec = 'linear:12:1e-4:0.3';
  const tables = makeSchedule(spec);
  const sample = golden('tiny/sample.safetensors');
  const gb = toFloat32(sample.tensors.get('betas')!);
  assert.is(gb.length, 12);
  for (let i = 0; i < 12; i++) assert.is(Math.fround(tables.betas[i]), gb[i], `betas[${i}] as float32`);
  const w = golden('tiny/weights.safetensors');
  let checked = 0;
  for (const [name, key] of Object.entries(REFERENCE_BUFFER_NAMES)) {
    const e = w.tensors.get(name);
    assert.ok(e, `weights.safetensors has ${name}`);
    const ref = toFloat32(e!);
    const ours = tables[key];
    assert.is(ref.length, ours.length, name);
    for (let i = 0; i < ref.length; i++) {
      // numpy float64 then float32; ours float64 then float32: equal, or one float32 ulp where log/sqrt round apart.
      const o = Math.fround(ours[i]);
      const ulp = Math.abs(ref[i]) * 2 ** -23;
      assert.ok(Math.abs(o - ref[i]) <= ulp, `${name}[${i}]: ${o} vs ${ref[i]}`);
    }
    checked++;
  }
  assert.is(checked, 12);
});

test('few-step kinds: logsnr spaces log(sigma) evenly, karras by rho = 7, between the given sigmas', () => {
  // sigma = sqrt((1 - gamma) / gamma), from the tables' gammas
  const sig = (spec: string) => Array.from(makeSchedule(spec).gammas, (g) => Math.sqrt((1 - g) / g));
  const l = sig('logsnr:5:0.02:50');
  // 1e-9: sigma is recovered from gamma = 1 / (1 + sigma^2), where 1 - gamma cancels at small sigma
  close(
    l,
    [0, 1, 2, 3, 4].map((i) => Math.exp(Math.log(0.02) + (i / 4) * Math.log(2500))),
    1e-9,
    'logsnr',
  );
  const k = sig('karras:6:0.002:80');
  const r = (x: number) => x ** (1 / 7);
  close(
    k,
    [0, 1, 2, 3, 4, 5].map((i) => (r(0.002) + (i / 5) * (r(80) - r(0.002))) ** 7),
    1e-9,
    'karras',
  );
  // defaults: sigma 0.01 (the default linear schedule's first level) to 100
  close([sig('logsnr:3')[0], sig('logsnr:3')[2]], [0.01, 100], 1e-9, 'logsnr defaults');
  assert.is(formatSchedule(parseSchedule('karras:8')), 'karras:8:0.01:100');
  close(sig('karras:1'), [100], 1e-12, 'one step: the largest sigma');
  for (const [s, re] of [
    ['logsnr:5:1:0.5', /start < end/],
    ['karras:5:0:1', /start must be > 0/],
  ] as [string, RegExp][])
    assert.throws(() => parseSchedule(s), re);
});

test('parseSchedule reads kind:steps:start:end and says what is wrong', () => {
  assert.equal(parseSchedule('linear:12:1e-4:0.3'), {
    schedule: 'linear',
    n_timestep: 12,
    linear_start: 1e-4,
    linear_end: 0.3,
  });
  assert.equal(parseSchedule(' Cosine:100 '), {
    schedule: 'cosine',
    n_timestep: 100,
    linear_start: 1e-4,
    linear_end: 2e-2,
  });
  assert.equal(parseSchedule('const:5::0.01').linear_end, 0.01);
  assert.is(formatSchedule(parseSchedule('quad:50:1e-6:0.01')), 'quad:50:0.000001:0.01');
  for (const k of SCHEDULE_KINDS) assert.is(makeSchedule(`${k}:20`).betas.length, 20, k);
  const bad: [string, RegExp][] = [
    ['', /empty/],
    ['linear', /kind:steps/],
    ['linear:10:1:2:3', /kind:steps/],
    ['sigmoid:10', /unknown kind "sigmoid".*linear, quad, cosine/],
    ['linear:0', /steps must be from 1/],
    ['linear:-3', /positive integer/],
    ['linear:1.5', /positive integer/],
    ['linear:abc', /positive integer/],
    ['linear:10:x', /start must be a number/],
    ['linear:10:1e-4:0x10', /end must be a number/],
    ['linear:10:1e-4:2', /end must be in \(0, 1\]/],
    ['linear:10:0:0.1', /start must be in \(0, 1\]/],
    ['linear:10:1e-4:Infinity', /end must be a number/],
    ['linear:99999999', /steps must be from 1/],
  ];
  for (const [s, re] of bad) {
    try {
      parseSchedule(s);
      assert.unreachable(`${JSON.stringify(s)} should be refused`);
    } catch (e) {
      assert.match((e as Error).message, re, `${JSON.stringify(s)}: ${(e as Error).message}`);
    }
  }
  assert.throws(() => scheduleTables([]), /no betas/);
  assert.throws(() => scheduleTables([0.1, 0]), /beta\[1\] = 0/);
  assert.throws(() => betaSchedule({ schedule: 'linear', n_timestep: 0 }), /number of steps/);
});

test.run();
