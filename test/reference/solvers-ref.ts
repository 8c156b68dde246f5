// Float64 references of the few-step solvers, written from the papers' reference implementations' loops
// (DPM-Solver's `multistep_dpm_solver_second_update` and UniPC's `multistep_uni_pc_bh_update` with predict_x0),
// independent of engine/sampler.ts's coefficient table: they keep lists of earlier model outputs and timesteps, and
// UniPC's corrector works from the previous corrected point, as the originals do.
//
// A trajectory goes through levels gamma_0 (noisiest, where x starts) .. gamma_{M-1}, then to the clean image
// (gamma = 1, sigma = 0): M model evaluations. model(x, sqrtGamma) returns eps.

export type EpsModel = (x: Float64Array, sqrtGamma: number) => Float64Array;

interface Level {
  alpha: number;
  sigma: number;
  lambda: number;
}

const level = (gamma: number): Level => {
  const alpha = Math.sqrt(gamma);
  const sigma = Math.sqrt(1 - gamma);
  return { alpha, sigma, lambda: sigma === 0 ? Infinity : Math.log(alpha / sigma) };
};

/** x0 = (x - sigma eps) / alpha, optionally clamped to [-1, 1] (static thresholding); eps = the model's output. */
function dataPrediction(model: EpsModel, x: Float64Array, l: Level, clip: boolean, keep?: (eps: Float64Array) => void) {
  const eps = model(x, l.alpha);
  keep?.(eps);
  return x.map((v, i) => {
    const x0 = (v - l.sigma * eps[i]) / l.alpha;
    return clip ? Math.min(1, Math.max(-1, x0)) : x0;
  });
}

/**
 * Something applied to x after every update (e.g. the consistency projection), given the level x is now at
 * (sqrt(gamma) and sqrt(1 - gamma)) and the model's eps of the step that made it.
 */
export type AfterUpdate = (x: Float64Array, alpha: number, sigma: number, eps: Float64Array) => Float64Array;

/**
 * DPM-Solver++(2M): `gammas` noisiest first (M of them). Returns every x after each update (M arrays, the last the
 * result). The last update (to sigma = 0) is first order (lower_order_final).
 */
export function dpmSolverPP2M(
  model: EpsModel,
  xT: Float64Array,
  gammas: number[],
  clip: boolean,
  after?: AfterUpdate,
): Float64Array[] {
  const ts = [...gammas.map(level), level(1)];
  const M = gammas.length;
  const out: Float64Array[] = [];
  let x = xT;
  const models: Float64Array[] = [];
  for (let step = 1; step <= M; step++) {
    let eps: Float64Array = new Float64Array(0);
    models.push(
      dataPrediction(model, x, ts[step - 1], clip, (e) => {
        eps = e;
      }),
    );
    const prev = ts[step - 1];
    const t = ts[step];
    const m0 = models[models.length - 1];
    const phi = t.sigma === 0 ? 1 : -Math.expm1(-(t.lambda - prev.lambda)); // 1 - e^{-h}
    let D: Float64Array;
    if (step === 1 || step === M) D = m0;
    else {
      const m1 = models[models.length - 2];
      const h = t.lambda - prev.lambda;
      const h0 = prev.lambda - ts[step - 2].lambda;
      const r0 = h0 / h;
      // D1_0 = (1 / r0) (m0 - m1); x_t = (sigma_t/sigma_prev) x - alpha_t (e^{-h} - 1) (m0 + D1_0 / 2)
      D = m0.map((v, i) => v + (0.5 / r0) * (v - m1[i]));
    }
    const ratio = t.sigma / prev.sigma;
    x = x.map((v, i) => ratio * v + t.alpha * phi * D[i]);
    if (after) x = after(x, t.alpha, t.sigma, eps);
    out.push(x);
  }
  return out;
}

/**
 * UniPC of order 2 with data prediction, variant 'bh1' (B(h) = h) or 'bh2' (B(h) = e^h - 1), the corrector on every
 * step but the last, lower_order_final. The reference corrects x_k only after evaluating the model there, so what is
 * comparable step by step with a sampler is the points the model is evaluated at (x_k before correction, k = 0..M-1)
 * and the final image.
 */
export function uniPC2(
  model: EpsModel,
  xT: Float64Array,
  gammas: number[],
  clip: boolean,
  variant: 'bh1' | 'bh2',
): { evaluatedAt: Float64Array[]; result: Float64Array } {
  const ts = [...gammas.map(level), level(1)];
  const M = gammas.length;
  const order = 2;
  const evaluatedAt: Float64Array[] = [xT];
  const modelPrev: Float64Array[] = [dataPrediction(model, xT, ts[0], clip)];
  const tPrev: Level[] = [ts[0]];
  let x = xT;
  const update = (
    x: Float64Array,
    t: Level,
    ord: number,
    useCorrector: boolean,
  ): { x: Float64Array; modelT: Float64Array | null } => {
    const m0 = modelPrev[modelPrev.length - 1];
    const p0 = tPrev[tPrev.length - 1];
    const h = t.lambda - p0.lambda;
    const rks: number[] = [];
    const D1s: Float64Array[] = [];
    for (let i = 1; i < ord; i++) {
      const pi = tPrev[tPrev.length - 1 - i];
      const mi = modelPrev[modelPrev.length - 1 - i];
      const rk = (pi.lambda - p0.lambda) / h;
      rks.push(rk);
      D1s.push(mi.map((v, j) => (v - m0[j]) / rk));
    }
    rks.push(1);
    const hh = -h;
    const hphi1 = t.sigma === 0 ? -1 : Math.expm1(hh);
    let hphik = hphi1 / hh - 1;
    let factorial = 1;
    const Bh = variant === 'bh1' ? hh : Math.expm1(hh);
    const R: number[][] = [];
    const b: number[] = [];
    for (let i = 1; i <= ord; i++) {
      R.push(rks.map((r) => r ** (i - 1)));
      b.push((hphik * factorial) / Bh);
      factorial *= i + 1;
      hphik = hphik / hh - 1 / factorial;
    }
    const rhosP = D1s.length > 0 ? [0.5] : [];
    let rhosC: number[] = [];
    if (useCorrector) rhosC = ord === 1 ? [0.5] : solve2(R, b);
    const ratio = t.sigma / p0.sigma;
    const xt_ = x.map((v, i) => ratio * v - t.alpha * hphi1 * m0[i]);
    // with sigma_t = 0 the update is x0 itself (0 * x; the e^{-inf} limit)
    let xt = xt_.map((v, i) => v - (D1s.length && t.sigma !== 0 ? t.alpha * Bh * rhosP[0] * D1s[0][i] : 0));
    let modelT: Float64Array | null = null;
    if (useCorrector) {
      evaluatedAt.push(xt);
      modelT = dataPrediction(model, xt, t, clip);
      const corr = D1s.length ? rhosC[0] : 0;
      const last = rhosC[rhosC.length - 1];
      const mt = modelT;
      xt = xt_.map((v, i) => v - t.alpha * Bh * ((D1s.length ? corr * D1s[0][i] : 0) + last * (mt[i] - m0[i])));
    }
    return { x: xt, modelT };
  };
  for (let step = 1; step < order && step <= M; step++) {
    const r = update(x, ts[step], step, step < M);
    x = r.x;
    if (step < M) {
      modelPrev.push(r.modelT!);
      tPrev.push(ts[step]);
    }
  }
  for (let step = order; step <= M; step++) {
    const ord = Math.min(order, M + 1 - step);
    const useCorrector = step !== M;
    const r = update(x, ts[step], ord, useCorrector);
    x = r.x;
    if (step < M) {
      modelPrev.push(r.modelT!);
      tPrev.push(ts[step]);
    }
  }
  return { evaluatedAt, result: x };
}

function solve2(R: number[][], b: number[]): number[] {
  const [[a, c], [d, e]] = R;
  const det = a * e - c * d;
  return [(b[0] * e - c * b[1]) / det, (a * b[1] - d * b[0]) / det];
}
