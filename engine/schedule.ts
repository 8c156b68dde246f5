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

/**
 * Inference schedules for few steps, placed by noise level rather than by betas. Their start/end are the smallest and
 * largest noise level as sigma = sqrt((1 - gamma) / gamma) (the noise-to-signal ratio; EDM's sigma):
 * - `logsnr`: log(sigma) uniform, i.e. uniform in log-SNR (what DPM-Solver and UniPC use for pixel-space models);
 * - `karras`: sigma_i = (smax^(1/7) + i/(N-1) (smin^(1/7) - smax^(1/7)))^7 (Karras et al. 2022, rho = 7), which
 *   spends more steps at low noise.
 * Their betas are 1 - gamma_t / gamma_{t-1}, so every table and sampler treats them like any other schedule.
 */
export const FEW_STEP_KINDS = ['logsnr', 'karras'] as const;
export type FewStepKind = (typeof FEW_STEP_KINDS)[number];
/** Default sigma range of the few-step kinds: sigma 0.01 is the default linear schedule's first level (beta 1e-4);
 * sigma 100 (sqrt(gamma) = 0.01) is close to the pure noise a sample starts from. */
export const FEW_STEP_SIGMA_MIN = 0.01;
export const FEW_STEP_SIGMA_MAX = 100;
const KARRAS_RHO = 7;

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
  if ((FEW_STEP_KINDS as readonly string[]).includes(s.schedule)) return fewStepBetas(s);
  return makeBetas(s);
}

/** The noise levels sigma = sqrt((1 - gamma) / gamma) of a few-step schedule, index 0 = the least noisy step. */
export function fewStepSigmas(kind: string, n: number, sigmaMin: number, sigmaMax: number): Float64Array {
  if (!(sigmaMin > 0 && sigmaMax > sigmaMin && Number.isFinite(sigmaMax))) {
    throw new Error(
      `schedule: ${kind} needs 0 < start < end (the smallest and largest sigma), got ${sigmaMin} and ${sigmaMax}`,
    );
  }
  const out = new Float64Array(n);
  for (let t = 0; t < n; t++) {
    const f = n === 1 ? 1 : t / (n - 1); // 0 at the least noisy step, 1 at the noisiest
    if (kind === 'logsnr') out[t] = Math.exp(Math.log(sigmaMin) + f * (Math.log(sigmaMax) - Math.log(sigmaMin)));
    else if (kind === 'karras') {
      const a = sigmaMin ** (1 / KARRAS_RHO);
      const b = sigmaMax ** (1 / KARRAS_RHO);
      out[t] = (a + f * (b - a)) ** KARRAS_RHO;
    } else throw new Error(`schedule: ${JSON.stringify(kind)} is not a few-step kind (${FEW_STEP_KINDS.join(', ')})`);
  }
  return out;
}

function fewStepBetas(s: Schedule): Float64Array {
  const sig = fewStepSigmas(
    s.schedule,
    s.n_timestep,
    s.linear_start ?? FEW_STEP_SIGMA_MIN,
    s.linear_end ?? FEW_STEP_SIGMA_MAX,
  );
  const betas = new Float64Array(s.n_timestep);
  let gp = 1;
  for (let t = 0; t < betas.length; t++) {
    const g = 1 / (1 + sig[t] * sig[t]);
    betas[t] = 1 - g / gp;
    gp = g;
  }
  return betas;
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
    `expected kind:steps[:start[:end]] with kind one of ${[...SCHEDULE_KINDS, ...FEW_STEP_KINDS].join(', ')} ` +
    `(e.g. linear:100:1e-4:0.2, or logsnr:8:0.01:100 with start/end the smallest and largest sigma)`;
  if (typeof spec !== 'string' || spec.trim() === '') throw new Error(`schedule: empty schedule; ${usage}`);
  const parts = spec.trim().split(':');
  if (parts.length < 2 || parts.length > 4) throw new Error(`schedule: cannot parse ${JSON.stringify(spec)}; ${usage}`);
  const kind = parts[0].trim().toLowerCase();
  const fewStep = (FEW_STEP_KINDS as readonly string[]).includes(kind);
  if (!fewStep && !(SCHEDULE_KINDS as readonly string[]).includes(kind)) {
    throw new Error(`schedule: unknown kind ${JSON.stringify(parts[0])} in ${JSON.stringify(spec)}; ${usage}`);
  }
  const stepsText = parts[1].trim();
  if (!/^[0-9]+$/.test(stepsText)) {
    throw new Error(
      `schedule: steps must be a positive integer, got ${JSON.stringify(parts[1])} in ${JSON.stringify(spec)}`,
    );
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
    if (fewStep ? !(v > 0) : !(v > 0 && v <= 1)) {
      throw new Error(
        `schedule: ${name} must be ${fewStep ? '> 0 (a sigma)' : 'in (0, 1]'}, got ${v} in ${JSON.stringify(spec)}`,
      );
    }
    return v;
  };
  const start = num(parts[2], 'start', fewStep ? FEW_STEP_SIGMA_MIN : DEFAULT_START);
  const end = num(parts[3], 'end', fewStep ? FEW_STEP_SIGMA_MAX : DEFAULT_END);
  if (fewStep && !(start < end)) {
    throw new Error(
      `schedule: ${kind} needs start < end (the smallest and largest sigma), got ${start} and ${end} in ${JSON.stringify(spec)}`,
    );
  }
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
  const few = (FEW_STEP_KINDS as readonly string[]).includes(s.schedule);
  const start = s.linear_start ?? (few ? FEW_STEP_SIGMA_MIN : DEFAULT_START);
  const end = s.linear_end ?? (few ? FEW_STEP_SIGMA_MAX : DEFAULT_END);
  return `${s.schedule}:${s.n_timestep}:${start}:${end}`;
}

/** Convenience: parse a spec (or take a schedule) and return its tables. */
export function makeSchedule(spec: string | Schedule): ScheduleTables {
  const s = typeof spec === 'string' ? parseSchedule(spec) : spec;
  return scheduleTables(betaSchedule(s));
}
