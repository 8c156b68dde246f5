// Noise schedules and the tables the samplers need, in float64, exactly as the reference computes them
// (model/sr3_modules/diffusion.py: make_beta_schedule + GaussianDiffusion.set_new_noise_schedule).
//
// The betas themselves come from weights-format's makeBetas (numpy.linspace reproduced bit for bit; the same function
// recovers a checkpoint's schedule); this module adds the `kind:steps:start:end` parser and the derived tables.
// Browser-safe: imports nothing from Node.

import { makeBetas } from '../weights-format/schedule.ts';
import type { Schedule } from '../weights-format/schedule.ts';

export type { Schedule };

/** The schedule kinds of the reference's make_beta_schedule. */
export const SCHEDULE_KINDS = ['linear', 'quad', 'cosine', 'warmup10', 'warmup50', 'const', 'jsd'] as const;
export type ScheduleKind = (typeof SCHEDULE_KINDS)[number];

/** Most steps a schedule may have (the reference trains with 2000; this only guards against typos). */
export const MAX_STEPS = 1_000_000;

/**
 * Every table of the reference's set_new_noise_schedule, in float64, indexed by step t = 0..T-1 (T = betas.length),
 * except `sqrtGammaPrev`, which has T+1 entries.
 */
export interface ScheduleTables {
  /** beta_t. */
  betas: Float64Array;
  /** alpha_t = 1 - beta_t. */
  alphas: Float64Array;
  /** gamma_t = prod_{k<=t} alpha_k (the reference's alphas_cumprod). */
  gammas: Float64Array;
  /** gamma_{t-1}, with gamma_{-1} = 1 (alphas_cumprod_prev). */
  gammasPrev: Float64Array;
  /** sqrt(gamma_t) (sqrt_alphas_cumprod): what the network is conditioned on at step t. */
  sqrtGamma: Float64Array;
  /** sqrt of [1, gamma_0, ..., gamma_{T-1}] (the reference's sqrt_alphas_cumprod_prev, T+1 entries). */
  sqrtGammaPrev: Float64Array;
  /** sqrt(1 - gamma_t). */
  sqrtOneMinusGamma: Float64Array;
  /** log(1 - gamma_t). */
  logOneMinusGamma: Float64Array;
  /** sqrt(1 / gamma_t). */
  sqrtRecipGamma: Float64Array;
  /** sqrt(1 / gamma_t - 1). */
  sqrtRecipm1Gamma: Float64Array;
  /** beta_t (1 - gamma_{t-1}) / (1 - gamma_t). */
  posteriorVariance: Float64Array;
  /** log(max(posteriorVariance, 1e-20)) (the reference: np.log(np.maximum(posterior_variance, 1e-20))). */
  posteriorLogVarianceClipped: Float64Array;
  /** beta_t sqrt(gamma_{t-1}) / (1 - gamma_t). */
  posteriorMeanCoef1: Float64Array;
  /** (1 - gamma_{t-1}) sqrt(alpha_t) / (1 - gamma_t). */
  posteriorMeanCoef2: Float64Array;
}

/** The reference's state_dict buffer name for each table (the keys of a checkpoint's schedule buffers). */
export const REFERENCE_BUFFER_NAMES: Readonly<Record<string, keyof ScheduleTables>> = {
  betas: 'betas',
  alphas_cumprod: 'gammas',
  alphas_cumprod_prev: 'gammasPrev',
  sqrt_alphas_cumprod: 'sqrtGamma',
  sqrt_one_minus_alphas_cumprod: 'sqrtOneMinusGamma',
  log_one_minus_alphas_cumprod: 'logOneMinusGamma',
  sqrt_recip_alphas_cumprod: 'sqrtRecipGamma',
  sqrt_recipm1_alphas_cumprod: 'sqrtRecipm1Gamma',
  posterior_variance: 'posteriorVariance',
  posterior_log_variance_clipped: 'posteriorLogVarianceClipped',
  posterior_mean_coef1: 'posteriorMeanCoef1',
  posterior_mean_coef2: 'posteriorMeanCoef2',
};

/**
 * The betas of a schedule, float64, as the reference's make_beta_schedule: linear (np.linspace), quad (linspace of
 * square roots, squared), warmup10/warmup50 (end-valued with the first int(n*frac) entries a linspace), const,
 * jsd (1/linspace(n, 1, n)), cosine (cosine_s = 8e-3 unless given, clamped to 0.999).
 */
export function betaSchedule(s: Schedule): Float64Array {
  if (!Number.isSafeInteger(s.n_timestep) || s.n_timestep < 1 || s.n_timestep > MAX_STEPS) {
    throw new Error(`schedule: the number of steps must be an integer from 1 to ${MAX_STEPS}, got ${s.n_timestep}`);
  }
  return makeBetas(s);
}

/** The derived tables of set_new_noise_schedule from betas (any float64/float32 array of values in (0, 1]). */
export function scheduleTables(betasIn: ArrayLike<number>): ScheduleTables {
  const n = betasIn.length;
  if (n === 0) throw new Error('schedule: no betas');
  const betas = Float64Array.from(betasIn);
  for (let i = 0; i < n; i++) {
    const b = betas[i];
    if (!(b > 0 && b <= 1)) throw new Error(`schedule: beta[${i}] = ${b} is outside (0, 1]`);
  }
  const mk = () => new Float64Array(n);
  const alphas = mk();
  const gammas = mk();
  const gammasPrev = mk();
  const sqrtGamma = mk();
  const sqrtGammaPrev = new Float64Array(n + 1);
  const sqrtOneMinusGamma = mk();
  const logOneMinusGamma = mk();
  const sqrtRecipGamma = mk();
  const sqrtRecipm1Gamma = mk();
  const posteriorVariance = mk();
  const posteriorLogVarianceClipped = mk();
  const posteriorMeanCoef1 = mk();
  const posteriorMeanCoef2 = mk();
  let g = 1;
  sqrtGammaPrev[0] = 1;
  for (let t = 0; t < n; t++) {
    const b = betas[t];
    const a = 1 - b;
    const gp = g;
    g = g * a; // np.cumprod: a running product, left to right
    alphas[t] = a;
    gammas[t] = g;
    gammasPrev[t] = gp;
    sqrtGamma[t] = Math.sqrt(g);
    sqrtGammaPrev[t + 1] = Math.sqrt(g);
    sqrtOneMinusGamma[t] = Math.sqrt(1 - g);
    logOneMinusGamma[t] = Math.log(1 - g);
    sqrtRecipGamma[t] = Math.sqrt(1 / g);
    sqrtRecipm1Gamma[t] = Math.sqrt(1 / g - 1);
    const v = (b * (1 - gp)) / (1 - g);
    posteriorVariance[t] = v;
    posteriorLogVarianceClipped[t] = Math.log(Math.max(v, 1e-20));
    posteriorMeanCoef1[t] = (b * Math.sqrt(gp)) / (1 - g);
    posteriorMeanCoef2[t] = ((1 - gp) * Math.sqrt(a)) / (1 - g);
  }
  return {
    betas,
    alphas,
    gammas,
    gammasPrev,
    sqrtGamma,
    sqrtGammaPrev,
    sqrtOneMinusGamma,
    logOneMinusGamma,
    sqrtRecipGamma,
    sqrtRecipm1Gamma,
    posteriorVariance,
    posteriorLogVarianceClipped,
    posteriorMeanCoef1,
    posteriorMeanCoef2,
  };
}

/** Defaults for the parts of a spec left out: the reference's make_beta_schedule defaults. */
const DEFAULT_START = 1e-4;
const DEFAULT_END = 2e-2;

/**
 * Parse `kind:steps[:start[:end]]`, e.g. `linear:12:1e-4:0.3`, `cosine:100`, `const:50::0.01`.
 * start/end are the reference's linear_start/linear_end (defaults 1e-4 and 2e-2; cosine and jsd ignore them;
 * const uses only end). Throws an Error saying what is wrong and what is expected.
 */
export function parseSchedule(spec: string): Schedule {
  const usage =
    `expected kind:steps[:start[:end]] with kind one of ${SCHEDULE_KINDS.join(', ')} ` +
    `(e.g. linear:100:1e-4:0.2)`;
  if (typeof spec !== 'string' || spec.trim() === '') throw new Error(`schedule: empty schedule; ${usage}`);
  const parts = spec.trim().split(':');
  if (parts.length < 2 || parts.length > 4) throw new Error(`schedule: cannot parse ${JSON.stringify(spec)}; ${usage}`);
  const kind = parts[0].trim().toLowerCase();
  if (!(SCHEDULE_KINDS as readonly string[]).includes(kind)) {
    throw new Error(`schedule: unknown kind ${JSON.stringify(parts[0])} in ${JSON.stringify(spec)}; ${usage}`);
  }
  const stepsText = parts[1].trim();
  if (!/^[0-9]+$/.test(stepsText)) {
    throw new Error(`schedule: steps must be a positive integer, got ${JSON.stringify(parts[1])} in ${JSON.stringify(spec)}`);
  }
  const steps = Number(stepsText);
  if (!(steps >= 1 && steps <= MAX_STEPS)) {
    throw new Error(`schedule: steps must be from 1 to ${MAX_STEPS}, got ${steps} in ${JSON.stringify(spec)}`);
  }
  const num = (text: string | undefined, name: string, dflt: number): number => {
    if (text === undefined || text.trim() === '') return dflt;
    const t = text.trim();
    const v = Number(t);
    if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t) || !Number.isFinite(v)) {
      throw new Error(`schedule: ${name} must be a number, got ${JSON.stringify(text)} in ${JSON.stringify(spec)}`);
    }
    if (!(v > 0 && v <= 1)) {
      throw new Error(`schedule: ${name} must be in (0, 1], got ${v} in ${JSON.stringify(spec)}`);
    }
    return v;
  };
  const start = num(parts[2], 'start', DEFAULT_START);
  const end = num(parts[3], 'end', DEFAULT_END);
  const s: Schedule = { schedule: kind, n_timestep: steps, linear_start: start, linear_end: end };
  // Check the betas it makes: (0, 1] everywhere, or the sampler would divide by zero or take log of a negative.
  const betas = betaSchedule(s);
  for (let i = 0; i < betas.length; i++) {
    if (!(betas[i] > 0 && betas[i] <= 1)) {
      throw new Error(`schedule: ${JSON.stringify(spec)} gives beta[${i}] = ${betas[i]}, outside (0, 1]`);
    }
  }
  return s;
}

/** `kind:steps:start:end` for a schedule (what parseSchedule reads back). */
export function formatSchedule(s: Schedule): string {
  return `${s.schedule}:${s.n_timestep}:${s.linear_start ?? DEFAULT_START}:${s.linear_end ?? DEFAULT_END}`;
}

/** Convenience: parse a spec (or take a schedule) and return its tables. */
export function makeSchedule(spec: string | Schedule): ScheduleTables {
  const s = typeof spec === 'string' ? parseSchedule(spec) : spec;
  return scheduleTables(betaSchedule(s));
}
