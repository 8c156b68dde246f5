// Plain TypeScript (float64) backward of the U-Net's ops, the counterparts of nn-ref.ts's forwards, NCHW. Test-only
// code written from the chain rule, independent of the WGSL kernels; test/backward.test.ts checks each against finite
// differences of nn-ref.ts.
import { type Act, activation, at, t4, type T4 } from './nn-ref.ts';

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));
/** d swish(z) / dz */
export const swishGrad = (z: number): number => {
  const s = sigmoid(z);
  return s * (1 + z * (1 - s));
};
/** d gelu(z) / dz (tanh approximation) */
export const geluGrad = (z: number): number => {
  const k = Math.sqrt(2 / Math.PI);
  const t = Math.tanh(k * (z + 0.044715 * z ** 3));
  return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * k * (1 + 3 * 0.044715 * z * z);
};
/** The derivative of nn-ref.ts activation(a), or null for none. */
export const activationGrad = (a: Act): ((z: number) => number) | null =>
  a === 'gelu' ? geluGrad : a ? swishGrad : null;

/** Backward of conv2d(x, w [Cout, Cin, k, k], bias, stride, padding k//2): dx, dw, db. */
export function conv2dBackward(
  x: T4,
  w: ArrayLike<number>,
  Cout: number,
  k: number,
  stride: number,
  dOut: T4,
): { dx: T4; dw: Float64Array; db: Float64Array } {
  const pad = Math.floor(k / 2);
  const { H: Ho, W: Wo } = dOut;
  const dx = t4(x.B, x.C, x.H, x.W);
  const dw = new Float64Array(Cout * x.C * k * k);
  const db = new Float64Array(Cout);
  for (let b = 0; b < x.B; b++)
    for (let co = 0; co < Cout; co++)
      for (let oy = 0; oy < Ho; oy++)
        for (let ox = 0; ox < Wo; ox++) {
          const g = dOut.data[((b * Cout + co) * Ho + oy) * Wo + ox];
          db[co] += g;
          for (let ci = 0; ci < x.C; ci++)
            for (let ky = 0; ky < k; ky++) {
              const iy = oy * stride + ky - pad;
              if (iy < 0 || iy >= x.H) continue;
              for (let kx = 0; kx < k; kx++) {
                const ix = ox * stride + kx - pad;
                if (ix < 0 || ix >= x.W) continue;
                const wi = ((co * x.C + ci) * k + ky) * k + kx;
                dw[wi] += g * at(x, b, ci, iy, ix);
                dx.data[((b * x.C + ci) * x.H + iy) * x.W + ix] += g * w[wi];
              }
            }
        }
  return { dx, dw, db };
}

/** Backward of nearest x2 upsampling: each input pixel gets the sum of its 2x2 block. */
export function upsample2Backward(dy: T4): T4 {
  const out = t4(dy.B, dy.C, dy.H / 2, dy.W / 2);
  for (let b = 0; b < dy.B; b++)
    for (let c = 0; c < dy.C; c++)
      for (let y = 0; y < dy.H; y++)
        for (let x = 0; x < dy.W; x++)
          out.data[((b * dy.C + c) * out.H + (y >> 1)) * out.W + (x >> 1)] += at(dy, b, c, y, x);
  return out;
}

/** Backward of groupNorm(x, G, gamma, beta, withAct, eps): dx, dgamma, dbeta (summed over batch and pixels). */
export function groupNormBackward(
  x: T4,
  G: number,
  gamma: ArrayLike<number>,
  beta: ArrayLike<number>,
  withAct: Act,
  dy: T4,
  eps = 1e-5,
): { dx: T4; dgamma: Float64Array; dbeta: Float64Array } {
  const df = activationGrad(withAct);
  const dx = t4(x.B, x.C, x.H, x.W);
  const dgamma = new Float64Array(x.C);
  const dbeta = new Float64Array(x.C);
  const cpg = x.C / G;
  const hw = x.H * x.W;
  const n = cpg * hw;
  for (let b = 0; b < x.B; b++)
    for (let g = 0; g < G; g++) {
      const start = (b * x.C + g * cpg) * hw;
      let s = 0;
      for (let i = 0; i < n; i++) s += x.data[start + i];
      const mean = s / n;
      let v = 0;
      for (let i = 0; i < n; i++) v += (x.data[start + i] - mean) ** 2;
      const rstd = 1 / Math.sqrt(v / n + eps);
      const xhat = new Float64Array(n);
      const dxhat = new Float64Array(n);
      let m1 = 0;
      let m2 = 0;
      for (let i = 0; i < n; i++) {
        const c = g * cpg + Math.floor(i / hw);
        xhat[i] = (x.data[start + i] - mean) * rstd;
        let dz = dy.data[start + i];
        if (df) dz *= df(xhat[i] * gamma[c] + beta[c]);
        dbeta[c] += dz;
        dgamma[c] += dz * xhat[i];
        dxhat[i] = dz * gamma[c];
        m1 += dxhat[i];
        m2 += dxhat[i] * xhat[i];
      }
      m1 /= n;
      m2 /= n;
      for (let i = 0; i < n; i++) dx.data[start + i] = rstd * (dxhat[i] - m1 - xhat[i] * m2);
    }
  return { dx, dgamma, dbeta };
}

/** Backward of addPerChannel(x, e): de[b, c] = sum over pixels of dy. */
export function addPerChannelBackward(dy: T4): Float64Array {
  const out = new Float64Array(dy.B * dy.C);
  const hw = dy.H * dy.W;
  for (let i = 0; i < dy.data.length; i++) out[Math.floor(i / hw)] += dy.data[i];
  return out;
}

/** Backward of concat(a, b) along channels: the two halves. */
export function splitChannels(x: T4, C1: number): [T4, T4] {
  const hw = x.H * x.W;
  const a = t4(x.B, C1, x.H, x.W);
  const b = t4(x.B, x.C - C1, x.H, x.W);
  for (let n = 0; n < x.B; n++) {
    a.data.set(x.data.subarray(n * x.C * hw, (n * x.C + C1) * hw), n * C1 * hw);
    b.data.set(x.data.subarray((n * x.C + C1) * hw, (n + 1) * x.C * hw), n * b.C * hw);
  }
  return [a, b];
}

/** Backward of attentionCore(qkv): dqkv [B, 3C, H, W] from dOut [B, C, H, W], with the full HW x HW matrices. */
export function attentionCoreBackward(qkv: T4, dOut: T4): T4 {
  const C = qkv.C / 3;
  const HW = qkv.H * qkv.W;
  const scale = 1 / Math.sqrt(C);
  const d = t4(qkv.B, qkv.C, qkv.H, qkv.W);
  for (let b = 0; b < qkv.B; b++) {
    const base = b * 3 * C * HW;
    const q = (c: number, i: number) => qkv.data[base + c * HW + i];
    const k = (c: number, j: number) => qkv.data[base + (C + c) * HW + j];
    const v = (c: number, j: number) => qkv.data[base + (2 * C + c) * HW + j];
    const dO = (c: number, i: number) => dOut.data[(b * C + c) * HW + i];
    for (let i = 0; i < HW; i++) {
      const p = new Float64Array(HW);
      let m = -Infinity;
      for (let j = 0; j < HW; j++) {
        let s = 0;
        for (let c = 0; c < C; c++) s += q(c, i) * k(c, j);
        p[j] = s * scale;
        m = Math.max(m, p[j]);
      }
      let l = 0;
      for (let j = 0; j < HW; j++) l += p[j] = Math.exp(p[j] - m);
      for (let j = 0; j < HW; j++) p[j] /= l;
      const dp = new Float64Array(HW);
      let D = 0;
      for (let j = 0; j < HW; j++) {
        for (let c = 0; c < C; c++) dp[j] += dO(c, i) * v(c, j);
        D += p[j] * dp[j];
      }
      for (let j = 0; j < HW; j++) {
        const ds = p[j] * (dp[j] - D);
        for (let c = 0; c < C; c++) {
          d.data[base + (2 * C + c) * HW + j] += p[j] * dO(c, i);
          d.data[base + c * HW + i] += scale * ds * k(c, j);
          d.data[base + (C + c) * HW + j] += scale * ds * q(c, i);
        }
      }
    }
  }
  return d;
}

/** Backward of linear(x [B, K], w [N, K], bias, N, actIn): dx, dw, db. */
export function linearBackward(
  x: ArrayLike<number>,
  B: number,
  K: number,
  w: ArrayLike<number>,
  N: number,
  dOut: ArrayLike<number>,
  actIn: Act = false,
): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const f = activation(actIn) ?? ((v: number) => v);
  const df = activationGrad(actIn) ?? (() => 1);
  const dx = new Float64Array(B * K);
  const dw = new Float64Array(N * K);
  const db = new Float64Array(N);
  for (let b = 0; b < B; b++)
    for (let n = 0; n < N; n++) {
      const g = dOut[b * N + n];
      db[n] += g;
      for (let kk = 0; kk < K; kk++) {
        const xv = x[b * K + kk];
        dw[n * K + kk] += g * f(xv);
        dx[b * K + kk] += g * w[n * K + kk] * df(xv);
      }
    }
  return { dx, dw, db };
}

/** nn.L1Loss / nn.MSELoss with reduction 'sum' or 'mean': the value and dloss/dpred (torch.sign(0) = 0). */
export function lossRef(
  pred: ArrayLike<number>,
  target: ArrayLike<number>,
  kind: 'l1' | 'l2',
  reduction: 'sum' | 'mean',
): { value: number; grad: Float64Array } {
  const n = pred.length;
  const r = reduction === 'mean' ? 1 / n : 1;
  let value = 0;
  const grad = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const d = pred[i] - target[i];
    if (kind === 'l1') {
      value += Math.abs(d);
      grad[i] = r * Math.sign(d);
    } else {
      value += d * d;
      grad[i] = r * 2 * d;
    }
  }
  return { value: value * r, grad };
}

/** torch.optim.Adam (amsgrad off), one step in float64 with torch's formula; mutates p, m, v. */
export function adamStepRef(
  p: Float64Array,
  g: ArrayLike<number>,
  m: Float64Array,
  v: Float64Array,
  step: number,
  o: { lr: number; beta1?: number; beta2?: number; eps?: number; weightDecay?: number },
): void {
  const b1 = o.beta1 ?? 0.9;
  const b2 = o.beta2 ?? 0.999;
  const eps = o.eps ?? 1e-8;
  const wd = o.weightDecay ?? 0;
  const bc1 = 1 - b1 ** step;
  const bc2 = 1 - b2 ** step;
  const stepSize = o.lr / bc1;
  const bc2Sqrt = Math.sqrt(bc2);
  for (let i = 0; i < p.length; i++) {
    const gi = wd !== 0 ? g[i] + wd * p[i] : g[i];
    m[i] = b1 * m[i] + (1 - b1) * gi;
    v[i] = b2 * v[i] + (1 - b2) * gi * gi;
    p[i] -= (stepSize * m[i]) / (Math.sqrt(v[i]) / bc2Sqrt + eps);
  }
}
