// Plain-TS float64 references for the resampling kernels (tests only). Written differently from the shaders on
// purpose: each 1D resize is a dense [out x in] weight matrix (border handling folded into the matrix), applied to the
// rows and then the columns of each plane.

/** Keys' cubic convolution kernel with parameter a, as a function of the distance x. */
export function keys(x: number, a: number): number {
  const t = Math.abs(x);
  if (t <= 1) return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1;
  if (t < 2) return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a;
  return 0;
}

/** The f32 scale the kernels (and PyTorch, for float tensors) use: in / out rounded to f32. */
const scaleOf = (inSize: number, outSize: number) => Math.fround(inSize / outSize);

/**
 * PyTorch's bicubic (antialias=False, align_corners=False): output o samples real = scale (o + 0.5) - 0.5 with the
 * four taps floor(real) - 1 .. floor(real) + 2, each clamped into [0, in-1]; weights keys(tap - real).
 */
export function interpMatrix(inSize: number, outSize: number, a: number): Float64Array[] {
  const scale = scaleOf(inSize, outSize);
  const rows: Float64Array[] = [];
  for (let o = 0; o < outSize; o++) {
    const m = new Float64Array(inSize);
    const real = scale * (o + 0.5) - 0.5;
    const i0 = Math.min(Math.floor(real), inSize - 1);
    const t = Math.min(Math.max(real - i0, 0), 1);
    for (let j = -1; j <= 2; j++) {
      const idx = Math.min(Math.max(i0 + j, 0), inSize - 1);
      m[idx] += keys(j - t, a);
    }
    rows.push(m);
  }
  return rows;
}

/**
 * PIL's resample filter (= PyTorch antialias=True): support 2 * max(scale, 1), taps x in [trunc(center - support
 * + 0.5), trunc(center + support + 0.5)) cut to [0, in), weight keys((x + 0.5 - center) / max(scale, 1)), normalised.
 */
export function filterMatrix(inSize: number, outSize: number, a: number): Float64Array[] {
  const scale = scaleOf(inSize, outSize);
  const fs = Math.max(scale, 1);
  const support = 2 * fs;
  const rows: Float64Array[] = [];
  for (let o = 0; o < outSize; o++) {
    const m = new Float64Array(inSize);
    const center = scale * (o + 0.5);
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    let sum = 0;
    for (let x = lo; x < hi; x++) {
      m[x] = keys((x + 0.5 - center) / fs, a);
      sum += m[x];
    }
    if (sum !== 0) for (let x = lo; x < hi; x++) m[x] /= sum;
    rows.push(m);
  }
  return rows;
}

/** Resize NCHW planes with separate row (height) and column (width) matrices; optional clamp to [-1, 1]. */
export function resizeRef(
  src: ArrayLike<number>,
  planes: number,
  inH: number,
  inW: number,
  outH: number,
  outW: number,
  method: 'interp' | 'filter',
  a: number,
  clamp = false,
): Float64Array {
  const mk = method === 'interp' ? interpMatrix : filterMatrix;
  const my = mk(inH, outH, a);
  const mx = mk(inW, outW, a);
  const out = new Float64Array(planes * outH * outW);
  const tmp = new Float64Array(inH * outW);
  for (let p = 0; p < planes; p++) {
    const base = p * inH * inW;
    for (let y = 0; y < inH; y++) {
      for (let ox = 0; ox < outW; ox++) {
        let s = 0;
        const row = mx[ox];
        for (let x = 0; x < inW; x++) s += row[x] * src[base + y * inW + x];
        tmp[y * outW + ox] = s;
      }
    }
    for (let oy = 0; oy < outH; oy++) {
      const col = my[oy];
      for (let ox = 0; ox < outW; ox++) {
        let s = 0;
        for (let y = 0; y < inH; y++) s += col[y] * tmp[y * outW + ox];
        out[(p * outH + oy) * outW + ox] = clamp ? Math.min(1, Math.max(-1, s)) : s;
      }
    }
  }
  return out;
}

/** Interleaved HWC samples (B images) -> NCHW values v / (2^bits - 1) * 2 - 1 with an output-channel map. */
export function toTensorRef(
  samples: ArrayLike<number>,
  B: number,
  H: number,
  W: number,
  inC: number,
  map: number[],
  bits: 8 | 16 = 8,
): Float64Array {
  const half = ((1 << bits) - 1) / 2;
  const out = new Float64Array(B * map.length * H * W);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < map.length; c++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) {
          out[((b * map.length + c) * H + y) * W + x] = samples[((b * H + y) * W + x) * inC + map[c]] / half - 1;
        }
  return out;
}

/** Round half to even (numpy/torch round, WGSL round). */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The reference's tensor2img for NCHW tensors: clamp to [-1, 1], (x + 1) / 2, * 255 (or 65535), round half to even,
 * interleaved HWC with samples from `map` (m < 4: channel of a; m >= 4: channel m - 4 of b). f32 roundings emulated.
 */
export function toPixelsRef(
  a: ArrayLike<number>,
  cA: number,
  b: ArrayLike<number> | null,
  cB: number,
  B: number,
  H: number,
  W: number,
  map: number[],
  bits: 8 | 16 = 8,
): number[] {
  const f = Math.fround;
  const max = bits === 8 ? 255 : 65535;
  const out: number[] = [];
  for (let n = 0; n < B; n++)
    for (let p = 0; p < H * W; p++)
      for (const m of map) {
        const v = m < 4 ? a[(n * cA + m) * H * W + p] : b![(n * cB + (m - 4)) * H * W + p];
        const u = f(f(Math.min(1, Math.max(-1, v)) + 1) * 0.5);
        out.push(roundHalfEven(f(u * max)));
      }
  return out;
}
