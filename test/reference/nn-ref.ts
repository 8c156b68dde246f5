// Plain TypeScript (float64) references of the U-Net's ops, NCHW. Test-only code: written from the math and the
// PyTorch definitions, independent of the WGSL kernels.

export type T4 = { data: Float64Array; B: number; C: number; H: number; W: number };

export function t4(B: number, C: number, H: number, W: number, data?: ArrayLike<number>): T4 {
  const out = new Float64Array(B * C * H * W);
  if (data) out.set(Array.from(data));
  return { data: out, B, C, H, W };
}

export const at = (t: T4, b: number, c: number, y: number, x: number): number =>
  t.data[((b * t.C + c) * t.H + y) * t.W + x];

export function concat(a: T4, b: T4): T4 {
  const out = t4(a.B, a.C + b.C, a.H, a.W);
  for (let n = 0; n < a.B; n++) {
    out.data.set(a.data.subarray(n * a.C * a.H * a.W, (n + 1) * a.C * a.H * a.W), n * out.C * a.H * a.W);
    out.data.set(b.data.subarray(n * b.C * a.H * a.W, (n + 1) * b.C * a.H * a.W), (n * out.C + a.C) * a.H * a.W);
  }
  return out;
}

export const swish = (x: number): number => x / (1 + Math.exp(-x));
/** torch.nn.functional.gelu(x, approximate='tanh') */
export const gelu = (x: number): number => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

/** An activation: true or 'swish' for Swish (the reference's), 'gelu' for GELU (tanh approximation), false for none. */
export type Act = boolean | 'swish' | 'gelu';
export const activation = (a: Act): ((x: number) => number) | null => (a === 'gelu' ? gelu : a ? swish : null);

/** torch.nn.GroupNorm(G, C, eps)(x), optionally followed by an activation (withAct: true for Swish). */
export function groupNorm(
  x: T4,
  G: number,
  gamma: ArrayLike<number>,
  beta: ArrayLike<number>,
  withAct: Act = false,
  eps = 1e-5,
): T4 {
  const f = activation(withAct);
  const out = t4(x.B, x.C, x.H, x.W);
  const cpg = x.C / G;
  const hw = x.H * x.W;
  for (let b = 0; b < x.B; b++) {
    for (let g = 0; g < G; g++) {
      const start = (b * x.C + g * cpg) * hw;
      const n = cpg * hw;
      let s = 0;
      for (let i = 0; i < n; i++) s += x.data[start + i];
      const mean = s / n;
      let v = 0;
      for (let i = 0; i < n; i++) v += (x.data[start + i] - mean) ** 2;
      const rstd = 1 / Math.sqrt(v / n + eps);
      for (let i = 0; i < n; i++) {
        const c = g * cpg + Math.floor(i / hw);
        let y = (x.data[start + i] - mean) * rstd * gamma[c] + beta[c];
        if (f) y = f(y);
        out.data[start + i] = y;
      }
    }
  }
  return out;
}

/** torch.nn.functional.conv2d(x, w [Cout, Cin, k, k], bias, stride, padding = k // 2). */
export function conv2d(
  x: T4,
  w: ArrayLike<number>,
  bias: ArrayLike<number> | null,
  Cout: number,
  k: number,
  stride = 1,
): T4 {
  const pad = Math.floor(k / 2);
  const Ho = Math.floor((x.H + 2 * pad - k) / stride) + 1;
  const Wo = Math.floor((x.W + 2 * pad - k) / stride) + 1;
  const out = t4(x.B, Cout, Ho, Wo);
  for (let b = 0; b < x.B; b++)
    for (let co = 0; co < Cout; co++)
      for (let oy = 0; oy < Ho; oy++)
        for (let ox = 0; ox < Wo; ox++) {
          let s = bias ? bias[co] : 0;
          for (let ci = 0; ci < x.C; ci++)
            for (let ky = 0; ky < k; ky++) {
              const iy = oy * stride + ky - pad;
              if (iy < 0 || iy >= x.H) continue;
              for (let kx = 0; kx < k; kx++) {
                const ix = ox * stride + kx - pad;
                if (ix < 0 || ix >= x.W) continue;
                s += w[((co * x.C + ci) * k + ky) * k + kx] * at(x, b, ci, iy, ix);
              }
            }
          out.data[((b * Cout + co) * Ho + oy) * Wo + ox] = s;
        }
  return out;
}

/** nn.Upsample(scale_factor=2, mode='nearest'). */
export function upsample2(x: T4): T4 {
  const out = t4(x.B, x.C, 2 * x.H, 2 * x.W);
  for (let b = 0; b < x.B; b++)
    for (let c = 0; c < x.C; c++)
      for (let y = 0; y < out.H; y++)
        for (let xx = 0; xx < out.W; xx++)
          out.data[((b * x.C + c) * out.H + y) * out.W + xx] = at(x, b, c, y >> 1, xx >> 1);
  return out;
}

export function add(a: T4, b: T4): T4 {
  const out = t4(a.B, a.C, a.H, a.W);
  for (let i = 0; i < a.data.length; i++) out.data[i] = a.data[i] + b.data[i];
  return out;
}

/** x + e[b, c] per channel (FeatureWiseAffine without affine level). */
export function addPerChannel(x: T4, e: ArrayLike<number>): T4 {
  const out = t4(x.B, x.C, x.H, x.W);
  const hw = x.H * x.W;
  for (let i = 0; i < x.data.length; i++) out.data[i] = x.data[i] + e[Math.floor(i / hw)];
  return out;
}

/** The attention core on qkv [B, 3C, H, W]: out[c, i] = sum_j softmax_j(q_i . k_j / sqrt(C)) v[c, j]. */
export function attentionCore(qkv: T4): T4 {
  const C = qkv.C / 3;
  const HW = qkv.H * qkv.W;
  const out = t4(qkv.B, C, qkv.H, qkv.W);
  const scale = 1 / Math.sqrt(C);
  for (let b = 0; b < qkv.B; b++) {
    const base = b * 3 * C * HW;
    const s = new Float64Array(HW);
    for (let i = 0; i < HW; i++) {
      let m = -Infinity;
      for (let j = 0; j < HW; j++) {
        let d = 0;
        for (let c = 0; c < C; c++) d += qkv.data[base + c * HW + i] * qkv.data[base + (C + c) * HW + j];
        s[j] = d * scale;
        m = Math.max(m, s[j]);
      }
      let l = 0;
      for (let j = 0; j < HW; j++) {
        s[j] = Math.exp(s[j] - m);
        l += s[j];
      }
      for (let c = 0; c < C; c++) {
        let o = 0;
        for (let j = 0; j < HW; j++) o += s[j] * qkv.data[base + (2 * C + c) * HW + j];
        out.data[(b * C + c) * HW + i] = o / l;
      }
    }
  }
  return out;
}

/** The reference's PositionalEncoding(dim) of levels [B] -> [B, dim]. */
export function positionalEncoding(level: ArrayLike<number>, dim: number): Float64Array {
  const count = dim / 2;
  const out = new Float64Array(level.length * dim);
  for (let b = 0; b < level.length; b++)
    for (let i = 0; i < count; i++) {
      const e = level[b] * Math.exp(-Math.log(1e4) * (i / count));
      out[b * dim + i] = Math.sin(e);
      out[b * dim + count + i] = Math.cos(e);
    }
  return out;
}

/** nn.Linear: x [B, K] -> [B, N] with W [N, K]. */
export function linear(
  x: ArrayLike<number>,
  B: number,
  K: number,
  w: ArrayLike<number>,
  bias: ArrayLike<number>,
  N: number,
  actIn: Act = false,
): Float64Array {
  const f = activation(actIn) ?? ((v: number) => v);
  const out = new Float64Array(B * N);
  for (let b = 0; b < B; b++)
    for (let n = 0; n < N; n++) {
      let s = bias[n];
      for (let k = 0; k < K; k++) s += w[n * K + k] * f(x[b * K + k]);
      out[b * N + n] = s;
    }
  return out;
}

/**
 * Round to the nearest IEEE half-precision value (ties to even), clamping beyond +-65504 as the mixed-precision
 * conv kernel does: what a GPU's f32 -> f16 conversion gives, for the f16 kernels' reference.
 */
export function roundF16(v: number): number {
  if (!Number.isFinite(v) || v === 0) return v;
  const a = Math.abs(v);
  if (a >= 65504) return Math.sign(v) * 65504;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const quantum = 2 ** (Math.max(e, -14) - 10); // subnormals below 2^-14 share the 2^-24 step
  const q = a / quantum;
  const f = Math.floor(q);
  const r = q - f > 0.5 || (q - f === 0.5 && f % 2 === 1) ? f + 1 : f;
  return Math.sign(v) * r * quantum;
}

export function mapT4(x: T4, f: (v: number) => number): T4 {
  return t4(x.B, x.C, x.H, x.W, Array.from(x.data, f));
}
