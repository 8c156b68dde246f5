// Plain-TS reference of the GPU generator (shaders/rng.ts), for tests only: Philox4x32-10 with the 64-bit products
// done in BigInt (independent of the shader's 16-bit-halves arithmetic), then the same float conversions.

const M0 = 0xd2511f53n;
const M1 = 0xcd9e8d57n;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;
const MASK = 0xffffffffn;

/** Philox4x32-10 of counter c (4 u32) and key k (2 u32): 4 u32. */
export function philoxRef(c: readonly number[], k: readonly number[]): number[] {
  let [c0, c1, c2, c3] = c.map((x) => x >>> 0);
  let [k0, k1] = k.map((x) => x >>> 0);
  for (let r = 0; r < 10; r++) {
    if (r > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const p0 = M0 * BigInt(c0);
    const p1 = M1 * BigInt(c2);
    const hi0 = Number(p0 >> 32n);
    const lo0 = Number(p0 & MASK);
    const hi1 = Number(p1 >> 32n);
    const lo1 = Number(p1 & MASK);
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
  }
  return [c0, c1, c2, c3];
}

/** The shader's u32 -> (0, 1) map: (top 23 bits + 0.5) / 2^23, exact in f32. */
export const u01Ref = (x: number): number => ((x >>> 9) + 0.5) / 8388608;

const f = Math.fround;
const PI_F32 = f(Math.PI);

/** The shader's ln_unit, with its f32 roundings (frexp by exact doubling). */
export function lnUnitRef(u: number): number {
  let m = u;
  let e = 0;
  while (m < 0.5) {
    m *= 2;
    e--;
  }
  // biome-ignore lint/suspicious/noApproximativeNumericConstant: the same literal as the WGSL kernel, rounded to f32 there
  if (m < f(0.70710678)) {
    m *= 2;
    e--;
  }
  const s = f(f(m - 1) / f(m + 1));
  const s2 = f(s * s);
  const c = [0.33333333, 0.2, 0.14285714, 0.11111111, 0.09090909].map(f);
  let p = f(c[4]);
  for (let i = 3; i >= 0; i--) p = f(c[i] + f(s2 * p));
  p = f(1 + f(s2 * p));
  return f(f(f(2 * s) * p) + f(e * f(Math.LN2)));
}

/** Box-Muller of two words with every f32 rounding the shader does (cos, sin, sqrt in float64, then rounded). */
export function boxMullerRef(x: number, y: number): [number, number] {
  const r = f(Math.sqrt(f(-2 * lnUnitRef(u01Ref(x)))));
  const theta = f(PI_F32 * (2 * u01Ref(y) - 1));
  return [f(r * f(Math.cos(theta))), f(r * f(Math.sin(theta)))];
}

/** Values [0, n) of the GPU fill for (seed words, stream, sub): raw words or normals. */
export function fillRef(n: number, seed: [number, number], stream: number, sub: number, raw = false): Float64Array {
  const out = new Float64Array(n);
  for (let b = 0; 4 * b < n; b++) {
    const w = philoxRef([b, stream, sub, 0], seed);
    const v = raw ? w : [...boxMullerRef(w[0], w[1]), ...boxMullerRef(w[2], w[3])];
    for (let j = 0; j < 4 && 4 * b + j < n; j++) out[4 * b + j] = v[j];
  }
  return out;
}
