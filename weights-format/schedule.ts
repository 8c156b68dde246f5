// Noise (beta) schedules of the reference (model/sr3_modules/diffusion.py make_beta_schedule), and recovering the
// training schedule from the `betas` buffer a checkpoint carries.

import { isPlainObject, ownValue } from './util.ts';

export interface Schedule {
  /** 'linear' | 'quad' | 'const' | 'jsd' | 'warmup10' | 'warmup50' | 'cosine' | 'custom' (explicit betas). */
  schedule: string;
  n_timestep: number;
  linear_start?: number;
  linear_end?: number;
  cosine_s?: number;
  /** Explicit betas, for 'custom' (and kept nowhere else). */
  betas?: number[];
}

const KNOWN = ['linear', 'quad', 'const', 'jsd', 'warmup10', 'warmup50', 'cosine', 'custom'];

/** numpy.linspace(start, stop, num) in float64, bit for bit. */
export function linspace(start: number, stop: number, num: number): Float64Array {
  const y = new Float64Array(num);
  const div = num - 1;
  const delta = stop - start;
  const step = delta / div;
  for (let i = 0; i < num; i++) y[i] = (step === 0 ? (i / div) * delta : i * step) + start;
  if (num > 1) y[num - 1] = stop;
  else if (num === 1) y[0] = start;
  return y;
}

/** The reference's make_beta_schedule, in float64. */
export function makeBetas(s: Schedule): Float64Array {
  const n = s.n_timestep;
  const ls = s.linear_start ?? 1e-4;
  const le = s.linear_end ?? 2e-2;
  switch (s.schedule) {
    case 'linear':
      return linspace(ls, le, n);
    case 'quad':
      return linspace(ls ** 0.5, le ** 0.5, n).map((x) => x * x);
    case 'const':
      return new Float64Array(n).fill(le);
    case 'jsd':
      return linspace(n, 1, n).map((x) => 1 / x);
    case 'warmup10':
    case 'warmup50': {
      const b = new Float64Array(n).fill(le);
      const w = Math.trunc(n * (s.schedule === 'warmup10' ? 0.1 : 0.5));
      b.set(linspace(ls, le, w));
      return b;
    }
    case 'cosine': {
      const cs = s.cosine_s ?? 8e-3;
      const a = new Float64Array(n + 1);
      for (let i = 0; i <= n; i++) a[i] = Math.cos(((i / n + cs) / (1 + cs)) * (Math.PI / 2)) ** 2;
      const b = new Float64Array(n);
      for (let i = 0; i < n; i++) b[i] = Math.min(1 - a[i + 1] / a[0] / (a[i] / a[0]), 0.999);
      return b;
    }
    case 'custom':
      if (!s.betas || s.betas.length !== n) throw new Error(`schedule: custom schedule needs ${n} betas`);
      return Float64Array.from(s.betas);
    default:
      throw new Error(`schedule: unknown schedule ${JSON.stringify(s.schedule)} (known: ${KNOWN.join(', ')})`);
  }
}

/** Validate a schedule object from a file; returns a clean copy. */
export function validateSchedule(v: unknown, where = 'schedule'): Schedule {
  if (!isPlainObject(v)) throw new Error(`${where}: not an object`);
  const get = (k: string) => ownValue(v, k);
  const schedule = get('schedule');
  if (typeof schedule !== 'string' || !KNOWN.includes(schedule)) {
    throw new Error(`${where}: schedule must be one of ${KNOWN.join(', ')}, got ${JSON.stringify(schedule)}`);
  }
  const n = get('n_timestep');
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > 1e7) {
    throw new Error(`${where}: n_timestep must be a positive integer, got ${JSON.stringify(n)}`);
  }
  const out: Schedule = { schedule, n_timestep: n };
  for (const k of ['linear_start', 'linear_end', 'cosine_s'] as const) {
    const x = get(k);
    if (x === undefined) continue;
    if (typeof x !== 'number' || !Number.isFinite(x))
      throw new Error(`${where}: ${k} must be a number, got ${JSON.stringify(x)}`);
    out[k] = x;
  }
  const betas = get('betas');
  if (betas !== undefined) {
    if (!Array.isArray(betas) || betas.length !== n || !betas.every((b) => typeof b === 'number' && b > 0 && b < 1)) {
      throw new Error(`${where}: betas must be ${n} numbers in (0, 1)`);
    }
    out.betas = betas.slice();
  }
  if (schedule === 'custom' && !out.betas) throw new Error(`${where}: a custom schedule needs its betas`);
  return out;
}

/** Shortest decimal that rounds to the same float32 (so 1e-4 stored as float32 reads back as 0.0001). */
export function shortestF32(x: number): number {
  const f = Math.fround(x);
  for (let p = 1; p <= 9; p++) {
    const d = Number(f.toPrecision(p));
    if (Math.fround(d) === f) return d;
  }
  return f;
}

function reproduces(s: Schedule, betas: Float32Array): boolean {
  if (s.n_timestep !== betas.length) return false;
  let b: Float64Array;
  try {
    b = makeBetas(s);
  } catch {
    return false;
  }
  for (let i = 0; i < b.length; i++) if (Math.fround(b[i]) !== betas[i]) return false;
  return true;
}

/**
 * Recover the schedule that produced a checkpoint's float32 `betas` buffer: `hint` (e.g. from the options file) when
 * it reproduces every value bit for bit, else linear or quad with end points read off the buffer when they do,
 * else the explicit betas ('custom').
 */
export function detectSchedule(betas: Float32Array, hint?: Schedule): { schedule: Schedule; matchedHint: boolean } {
  const n = betas.length;
  if (n === 0) throw new Error('schedule: the betas buffer is empty');
  for (const b of betas) {
    if (!(b > 0 && b < 1)) throw new Error(`schedule: the betas buffer holds ${b}, outside (0, 1); corrupt checkpoint`);
  }
  if (hint && reproduces(hint, betas)) return { schedule: hint, matchedHint: true };
  if (n >= 2) {
    const ls = shortestF32(betas[0]);
    const le = shortestF32(betas[n - 1]);
    for (const schedule of ['linear', 'quad']) {
      const s: Schedule = { schedule, n_timestep: n, linear_start: ls, linear_end: le };
      if (reproduces(s, betas)) return { schedule: s, matchedHint: false };
    }
  }
  return { schedule: { schedule: 'custom', n_timestep: n, betas: Array.from(betas, shortestF32) }, matchedHint: false };
}
