// Direct (register-blocked) backward kernels for the stride-2 and the upsampled convs on CPU-like devices (software
// Vulkan), where every per-lane load is a loop with bounds checks and arithmetic is nearly free: the generic GEMM
// kernels of conv2d_backward.ts gather through workgroup memory and, for stride 2, spend 3 in 4 of their loads on the
// stride mask. Like the forward's direct kernel (shaders/conv2d.ts conv2dDirectWgsl), each invocation holds a block
// of outputs in registers and the address math is unrolled at generation time, so it is an add per element. The
// block shapes are chosen in engine/ops/conv2d-backward.ts (dxStridedBlock, stridedWeightGradient), measured on lavapipe.
//
// The input gradient of a conv (pad P = KS/2) is a sum over the output pixels that read each input pixel. Split by
// the position of the input pixel, each class receives from a fixed set of taps:
// - stride 2: input row iy = 2m + py gets output row oy = m + (py + P - ky) / 2 through tap row ky for the ky with
//   py + P - ky even (3x3: even rows one tap, ky = 1 at oy = m; odd rows two, ky = 0 at m + 1 and ky = 2 at m), the
//   same for columns: 9 taps per 2x2 block of input pixels instead of 36 masked ones;
// - nearest-x2 upsampling: input row iy is copied to rows 2iy and 2iy + 1, which tap row ky reads from output rows
//   Y = 2iy + e + P - ky (e = 0, 1). Grouped by Y = 2iy + dy, dy in [P + 1 - KS, P + 1], the weights that meet are
//   summed once: a (KS+1) x (KS+1) kernel of effective taps, stride 2 over the output gradient (16 taps per input
//   pixel for 3x3, where the upsampled map would take 36).
// The weights are first gathered, transposed and (for upsampling) summed into [Cout][tap][Cin padded] so the kernel
// stages each vec4 of 4 input channels with one load.
//
// The weight gradient walks the output gradient four pixels of a row at a time, as the stride-1 banded kernel
// (convDwDirectWgsl), with the forward's input addressing (stride 2, or the upsampled frame read at half
// resolution); each invocation owns RC output channels x RCI input channels x a band of rows.
//
// Summing the upsampled taps first changes only the order of f32 additions: the results match the float64 reference
// as closely as the GEMM kernels do (test/backward-direct.test.ts).
import { flatMain256Wgsl } from './common.ts';
import { dwBandWgsl } from './conv2d_backward.ts';
import { CONV_SHAPE_FIELDS } from './conv2d_common.ts';
import { uniformLayout } from './uniform.ts';

// The kernels' uniforms, each declared once for the WGSL struct and the host's packer (shaders/uniform.ts).
/** dxWeightsWgsl's uniform. */
export const DX_WEIGHTS_UNIFORM = uniformLayout('P', {
  Cout: 'u32',
  Cin: 'u32',
  CinP: 'u32',
  wOff: 'u32',
});

/** convDxDirectWgsl's uniform. */
export const DX_DIRECT_UNIFORM = uniformLayout('P', {
  ...CONV_SHAPE_FIELDS,
  CinP: 'u32',
  accumulate: 'u32',
});

/** convDwStridedWgsl's uniform. */
export const DW_STRIDED_UNIFORM = uniformLayout('P', {
  B: 'u32',
  C1: 'u32',
  C2: 'u32',
  H: 'u32',
  W: 'u32',
  Hout: 'u32',
  Wout: 'u32',
  Cout: 'u32',
  rows: 'u32',
  chunks: 'u32',
});

export type StridedMode = 'stride2' | 'upsample';

/** One effective tap of the input gradient: its index in the gathered weights and the original taps summed into it. */
interface Tap {
  t: number;
  sources: number[];
}

/**
 * The input-gradient taps along one axis: for each position class (stride 2: the parity of the input coordinate;
 * upsampling: one class), the list of [source offset, tap index along the axis]; the offsets are relative to the
 * block's base in the output gradient (stride 2: input coordinate / 2; upsampling: 2 * input coordinate).
 * Also the effective taps along the axis (for upsampling, each a sum of original taps).
 */
function axisTaps(ks: 1 | 3, mode: StridedMode): { classes: [number, number][][]; eff: number[][] } {
  const pad = ks >> 1;
  if (mode === 'stride2') {
    const classes: [number, number][][] = [0, 1].map((py) => {
      const list: [number, number][] = [];
      for (let k = 0; k < ks; k++) if ((((py + pad - k) % 2) + 2) % 2 === 0) list.push([(py + pad - k) / 2, k]);
      return list;
    });
    return { classes, eff: [...Array(ks).keys()].map((k) => [k]) };
  }
  // upsampling: dy = e + pad - k for e in {0, 1}; effective tap a = dy - (pad + 1 - ks)
  const lo = pad + 1 - ks;
  const eff: number[][] = [...Array(ks + 1)].map(() => []);
  for (let e = 0; e < 2; e++) for (let k = 0; k < ks; k++) eff[e + pad - k - lo].push(k);
  return { classes: [eff.map((_, a) => [a + lo, a] as [number, number])], eff };
}

/** The effective taps of the input gradient in 2-D, row-major, each with its original taps (ky * KS + kx). */
export function dxTaps(ks: 1 | 3, mode: StridedMode): Tap[] {
  const { eff } = axisTaps(ks, mode);
  const T: Tap[] = [];
  for (let a = 0; a < eff.length; a++) {
    for (let b = 0; b < eff.length; b++) {
      T.push({ t: a * eff.length + b, sources: eff[a].flatMap((ky) => eff[b].map((kx) => ky * ks + kx)) });
    }
  }
  return T;
}

/**
 * wT[(co * T + t) * CinP + ci] = sum of W[co, ci, s] over the original taps s of effective tap t (0 for ci >= Cin):
 * the weights transposed for the input gradient, one vec4 of 4 input channels per staged element. One invocation per
 * (co, ci) reads its KS*KS weights once and writes its T effective taps.
 */
export function dxWeightsWgsl(ks: 1 | 3, mode: StridedMode): string {
  const taps = dxTaps(ks, mode);
  const KK = ks * ks;
  const T = taps.length;
  const L: string[] = [];
  for (let s = 0; s < KK; s++) L.push(`    w${s} = params[w + ${s}u];`);
  const S = taps.map((tp) => `  wT[o + ${tp.t}u * p.CinP] = ${tp.sources.map((s) => `w${s}`).join(' + ')};`);
  return /* wgsl */ `
${DX_WEIGHTS_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> params: array<f32>;
@group(0) @binding(1) var<storage, read_write> wT: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

${flatMain256Wgsl()}
  if (i >= p.Cout * p.CinP) { return; }
  let ci = i % p.CinP;
  let co = i / p.CinP;
${[...Array(KK).keys()].map((s) => `  var w${s} = 0.0;`).join('\n')}
  if (ci < p.Cin) {
    let w = p.wOff + (co * p.Cin + ci) * ${KK}u;
${L.join('\n')}
  }
  let o = co * ${T}u * p.CinP + ci;
${S.join('\n')}
}
`;
}

export interface DxDirectShape {
  ks: 1 | 3;
  mode: StridedMode;
  /** input-gradient rows per invocation (stride 2: even) */
  RY: number;
  /** consecutive input-gradient columns per invocation (stride 2: even) */
  PX: number;
  /** input channels per invocation, a multiple of 4 */
  RN: number;
  /** output-gradient channels whose weights are staged in workgroup memory at a time */
  CC: number;
  /** invocations per workgroup */
  WG: number;
  /**
   * Read the output gradient as vec4s: its rows a multiple of 4 wide and the block's first column in it a multiple of
   * 4 (stride 2: PX a multiple of 8; upsampling: PX even).
   */
  vecG?: boolean;
  /** Write the input gradient as vec4s: its rows a multiple of 4 wide, PX a multiple of 4. */
  vecOut?: boolean;
}

/**
 * The input gradient of a stride-2 or upsampled conv: invocation (unit, channel block, batch) owns RY x PX input
 * pixels x RN input channels; for each output channel (the reduction) it loads the output-gradient values its block
 * touches once and the staged weights of each effective tap as vec4s, and writes (or adds) its block into dA / dB
 * (input channels [0, C1) / [C1, C1 + C2)).
 */
export function convDxDirectWgsl(o: DxDirectShape): string {
  const { ks, mode, RY, PX, RN, CC, WG } = o;
  const vecG = !!o.vecG;
  const vecOut = !!o.vecOut;
  if (vecOut && PX % 4 !== 0) throw new Error('convDxDirectWgsl: vec4 writes need PX % 4 == 0');
  if (vecG && (mode === 'stride2' ? PX % 8 : PX % 2) !== 0)
    throw new Error('convDxDirectWgsl: vec4 reads need the block to start on a vec4');
  if (RN % 4 !== 0) throw new Error('convDxDirectWgsl: RN must be a multiple of 4');
  if (mode === 'stride2' && (RY % 2 !== 0 || PX % 2 !== 0))
    throw new Error('convDxDirectWgsl: stride 2 needs an even block');
  const taps = dxTaps(ks, mode);
  const T = taps.length;
  const TA = Math.round(Math.sqrt(T));
  const RN4 = RN / 4;
  const { classes } = axisTaps(ks, mode);
  // per block row r / column i: [source offset from the block's base, tap index along the axis]
  const along = (n: number): [number, number][][] =>
    [...Array(n).keys()].map((r) => {
      if (mode === 'stride2') return classes[r % 2].map(([d, k]) => [(r >> 1) + d, k] as [number, number]);
      return classes[0].map(([d, k]) => [2 * r + d, k] as [number, number]);
    });
  const rows = along(RY);
  const cols = along(PX);
  const srcRows = [...new Set(rows.flat().map(([d]) => d))].sort((a, b) => a - b);
  const srcCols = [...new Set(cols.flat().map(([d]) => d))].sort((a, b) => a - b);
  const nm = (d: number) => (d < 0 ? `m${-d}` : `${d}`);
  const I = [...Array(PX).keys()];
  const R = [...Array(RY).keys()];
  const J = [...Array(RN).keys()];

  const S: string[] = [];
  for (const d of srcCols) {
    S.push(`  let gx${nm(d)} = gxb + ${d};`);
    S.push(`  let vx${nm(d)} = gx${nm(d)} >= 0 && gx${nm(d)} < i32(p.Wout);`);
    S.push(`  let cx${nm(d)} = u32(select(0, gx${nm(d)}, vx${nm(d)}));`);
  }
  for (const d of srcRows) {
    S.push(`  let gy${nm(d)} = gyb + ${d};`);
    S.push(`  let vy${nm(d)} = gy${nm(d)} >= 0 && gy${nm(d)} < i32(p.Hout);`);
    S.push(`  let ry${nm(d)} = u32(select(0, gy${nm(d)}, vy${nm(d)})) * p.Wout;`);
  }
  for (const r of R) for (const i of I) for (const j of J) S.push(`  var a${r}_${i}_${j} = 0.0;`);

  // the reduction body for one output channel: the output-gradient values the block reads, then per effective tap
  // its staged weights (RN/4 vec4s, loaded once) and every (pixel, value) pair it joins
  const B: string[] = [];
  const rowLoads = (sr: string, tag: string) => {
    if (vecG) {
      // column d is component d mod 4 of vec4 floor(d / 4) from the block's base (a vec4 before the row's start is
      // re-read from the row's first, its values masked)
      B.push(`      let rv${tag} = (gc + ry${sr}) / 4u + gxv;`);
      for (const k of [...new Set(srcCols.map((d) => Math.floor(d / 4)))]) {
        const idx = k < 0 ? `select(rv${tag} - ${-k}u, rv${tag}, gxv < ${-k}u)` : `rv${tag} + ${k}u`;
        B.push(`      let q${tag}_${nm(k)} = dOut4[${idx}];`);
      }
    }
    for (const d of srcCols) {
      const k = Math.floor(d / 4);
      const v = vecG ? `q${tag}_${nm(k)}[${d - 4 * k}]` : `dOut[gc + ry${sr} + cx${nm(d)}]`;
      B.push(`      let g${tag}_${nm(d)} = select(0.0, ${v}, vy${sr} && vx${nm(d)});`);
    }
  };
  if (mode === 'upsample' && RY === 1) {
    // one input row reads TA output-gradient rows, each through its own TA effective taps: a loop over them (a
    // quarter of the text of the unrolled form, which took LLVM 4-6 s to compile at 8 x 16)
    const lo = srcRows[0];
    B.push(`      for (var a = 0; a < ${TA}; a++) {`);
    B.push(`      let gyr = gyb + a + ${lo};`);
    B.push(`      let vyr = gyr >= 0 && gyr < i32(p.Hout);`);
    B.push(`      let ryr = u32(select(0, gyr, vyr)) * p.Wout;`);
    rowLoads('r', 'r');
    B.push(`      let wa = wt + u32(a) * ${TA * RN4}u;`);
    for (let tx = 0; tx < TA; tx++) {
      for (let q = 0; q < RN4; q++) B.push(`      let w${tx}_${q} = ws[wa + ${tx * RN4 + q}u];`);
      for (const i of I) {
        for (const [sc, kc] of cols[i]) {
          if (kc !== tx) continue;
          for (const j of J)
            B.push(`      a0_${i}_${j} = fma(gr_${nm(sc)}, w${tx}_${j >> 2}[${j & 3}], a0_${i}_${j});`);
        }
      }
    }
    B.push(`      }`);
  } else {
    for (const sr of srcRows) rowLoads(nm(sr), nm(sr));
    for (let t = 0; t < T; t++) {
      const ty = Math.floor(t / TA);
      const tx = t % TA;
      const fmas: string[] = [];
      for (const r of R) {
        for (const [sr, kr] of rows[r]) {
          if (kr !== ty) continue;
          for (const i of I) {
            for (const [sc, kc] of cols[i]) {
              if (kc !== tx) continue;
              for (const j of J)
                fmas.push(
                  `      a${r}_${i}_${j} = fma(g${nm(sr)}_${nm(sc)}, w${t}_${j >> 2}[${j & 3}], a${r}_${i}_${j});`,
                );
            }
          }
        }
      }
      if (!fmas.length) continue;
      for (let q = 0; q < RN4; q++) B.push(`      let w${t}_${q} = ws[wt + ${t * RN4 + q}u];`);
      B.push(...fmas);
    }
  }

  // the epilogue: the accumulators into an array, then one loop over it (unrolled stores with their bounds tests
  // and the accumulate / dA-or-dB branches take LLVM several times longer to compile than the whole reduction); four
  // pixels a store where the rows allow vec4s
  const V = vecOut ? 4 : 1;
  const n = (RY * PX * RN) / V;
  const E: string[] = [];
  E.push(`  var res: array<${vecOut ? 'vec4f' : 'f32'}, ${n}>;`);
  for (const j of J) {
    for (const r of R) {
      for (let i = 0; i < PX; i += V) {
        const v = vecOut ? `vec4f(${[0, 1, 2, 3].map((c) => `a${r}_${i + c}_${j}`).join(', ')})` : `a${r}_${i}_${j}`;
        E.push(`  res[${((j * RY + r) * PX + i) / V}u] = ${v};`);
      }
    }
  }
  const Q = PX / V;
  E.push(`  for (var k = 0u; k < ${n}u; k++) {`);
  E.push(`    let ci = ci0 + k / ${RY * Q}u;`);
  E.push(`    let iy = iy0 + (k / ${Q}u) % ${RY}u;`);
  E.push(`    let ix = ix0 + (k % ${Q}u) * ${V}u;`);
  E.push(`    if (!live || ci >= Cin || iy >= p.Hin || ix >= p.Win) { continue; }`);
  E.push(`    let pix = (iy * p.Win + ix) / ${V}u;`);
  E.push(`    if (ci < p.C1) {`);
  E.push(`      let o = (b * p.C1 + ci) * hw${vecOut ? '4' : ''} + pix;`);
  E.push(`      dA[o] = select(${vecOut ? 'vec4f(0.0)' : '0.0'}, dA[o], p.accumulate != 0u) + res[k];`);
  E.push(`    } else {`);
  E.push(`      let o = (b * p.C2 + ci - p.C1) * hw${vecOut ? '4' : ''} + pix;`);
  E.push(`      dB[o] = select(${vecOut ? 'vec4f(0.0)' : '0.0'}, dB[o], p.accumulate != 0u) + res[k];`);
  E.push(`    }`);
  E.push(`  }`);

  const base =
    mode === 'stride2'
      ? [`  let gyb = i32(iy0 / 2u);`, `  let gxb = i32(ix0 / 2u);`]
      : [`  let gyb = i32(iy0 * 2u);`, `  let gxb = i32(ix0 * 2u);`];

  return /* wgsl */ `
${DX_DIRECT_UNIFORM.wgsl}

@group(0) @binding(0) var<storage, read> wT: array<vec4f>;
@group(0) @binding(1) var<storage, read> ${vecG ? 'dOut4: array<vec4f>' : 'dOut: array<f32>'};
@group(0) @binding(2) var<storage, read_write> dA: array<${vecOut ? 'vec4f' : 'f32'}>;
@group(0) @binding(3) var<storage, read_write> dB: array<${vecOut ? 'vec4f' : 'f32'}>;
@group(0) @binding(4) var<uniform> p: P;

var<workgroup> ws: array<vec4f, ${CC * T * RN4}>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let Cin = p.C1 + p.C2;
  let hw = p.Hin * p.Win;
  let hw4 = hw / 4u;
  let b = wg.z;
  let ci0 = wg.y * ${RN}u;
  let QW = (p.Win + ${PX - 1}u) / ${PX}u;
  let QH = (p.Hin + ${RY - 1}u) / ${RY}u;
  let unit = wg.x * ${WG}u + li;
  let live = unit < QH * QW;
  let uc = min(unit, QH * QW - 1u);
  let by = uc / QW;
  let iy0 = by * ${RY}u;
  let ix0 = (uc - by * QW) * ${PX}u;
${base.join('\n')}
  let CinP4 = p.CinP / 4u;
  let gxv = u32(gxb) / 4u;
${S.join('\n')}
  for (var c0 = 0u; c0 < p.Cout; c0 += ${CC}u) {
    let cn = min(${CC}u, p.Cout - c0);
    workgroupBarrier();
    for (var e = li; e < cn * ${T * RN4}u; e += ${WG}u) {
      let cl = e / ${T * RN4}u;
      let r = e - cl * ${T * RN4}u;
      let t = r / ${RN4}u;
      let q = r - t * ${RN4}u;
      ws[e] = wT[((c0 + cl) * ${T}u + t) * CinP4 + ci0 / 4u + q];
    }
    workgroupBarrier();
    for (var cl = 0u; cl < cn; cl++) {
      let gc = (b * p.Cout + c0 + cl) * p.Hout * p.Wout;
      let wt = cl * ${T * RN4}u;
${B.join('\n')}
    }
  }
${E.join('\n')}
}
`;
}

export interface DwDirectShape {
  ks: 1 | 3;
  mode: StridedMode;
  /** output channels per invocation (RC >= 1) */
  RC: number;
  /** input channels per invocation (each of its loaded input values serves RC channels, each dOut vec4 RCI) */
  RCI: number;
  /** output-gradient rows per step (upsampling: 2, the two rows that copy one input row) */
  RY: number;
  /** the output gradient's rows are a multiple of 4 wide: read it as vec4s */
  vecG: boolean;
  /** whether input B (the skip concatenation) has channels: without it, its branch is left out of the text */
  concat: boolean;
  /** stride 2 only: read the input as vec4s (its rows a multiple of 4 wide; a step's 9 columns start on a vec4) */
  vecX?: boolean;
}

/**
 * The weight gradient of a stride-2 or upsampled conv on a plain input: invocation (band slice, block of RCI input
 * channels, block of RC output channels) walks its band of output-gradient rows RY rows x 4 columns at a time, loads
 * the forward's input values those pixels read through each tap once (deduplicated at generation time: upsampled
 * columns come in pairs), and keeps the RC x RCI x KS*KS sums in registers; it writes them to its slice of
 * `partial` ([slice][Cout][Cin][KS*KS], the weights' layout), summed by SPLIT_REDUCE_WGSL.
 */
export function convDwStridedWgsl(o: DwDirectShape): string {
  const { ks, mode, RC, RCI, RY, vecG, concat } = o;
  const KK = ks * ks;
  const pad = ks >> 1;
  const up = mode === 'upsample';
  const vecX = !!o.vecX;
  if (up && RY % 2 !== 0) throw new Error('convDwStridedWgsl: upsampling needs pairs of rows');
  if (up && vecX) throw new Error('convDwStridedWgsl: vec4 input reads are for stride 2');
  const R = [...Array(RY).keys()];
  const I = [0, 1, 2, 3];
  const Kx = [...Array(ks).keys()];
  // the input offset (rows from the step's base row, columns from its base column) read by block row r / column i
  // through tap k: stride 2 reads input 2 * o + k - pad (base 2 * o0); upsampling reads (o + k - pad) >> 1 (base o0 / 2,
  // o0 even)
  const off = (r: number, k: number) => (up ? Math.floor((r + k - pad) / 2) : 2 * r + k - pad);
  const rowsUsed = [...new Set(R.flatMap((r) => Kx.map((k) => off(r, k))))].sort((a, b) => a - b);
  const colsUsed = [...new Set(I.flatMap((i) => Kx.map((k) => off(i, k))))].sort((a, b) => a - b);
  const nm = (d: number) => (d < 0 ? `m${-d}` : `${d}`);
  const C = [...Array(RC).keys()];
  const N = [...Array(RCI).keys()];

  const L: string[] = [];
  for (const d of colsUsed) {
    L.push(`      let sx${nm(d)} = xb + ${d};`);
    L.push(`      let vx${nm(d)} = sx${nm(d)} >= 0 && sx${nm(d)} < i32(p.W);`);
    L.push(`      let cx${nm(d)} = u32(select(0, sx${nm(d)}, vx${nm(d)}));`);
  }
  // the output gradient: RC channels x RY rows of 4 pixels (0 past the channels)
  for (const j of C) {
    for (const r of R) {
      const row = `(gc${j} + y + ${r}u) * `;
      if (vecG) {
        L.push(`      let g${j}_${r} = select(vec4f(0.0), dOut4[${row}W4 + x4], co0 + ${j}u < p.Cout);`);
      } else {
        L.push(`      var g${j}_${r} = vec4f(0.0);`);
        L.push(`      if (co0 + ${j}u < p.Cout) {`);
        for (const i of I)
          L.push(`        if (ox0 + ${i}u < p.Wout) { g${j}_${r}[${i}] = dOut[${row}p.Wout + ox0 + ${i}u]; }`);
        L.push(`      }`);
      }
    }
  }
  for (const dr of rowsUsed) {
    L.push(`      {`);
    L.push(`        let sy = yb + ${dr};`);
    L.push(`        let vy = sy >= 0 && sy < i32(p.H);`);
    L.push(`        let rb = u32(select(0, sy, vy)) * p.W;`);
    for (const n of N) {
      if (vecX) {
        // column d is component d mod 4 of vec4 floor(d / 4) from the step's base (which is a multiple of 8; the
        // vec4 before a row's start is re-read from its first, its values masked)
        L.push(`        let xv${n} = (xc${n} + rb) / 4u + xbv;`);
        for (const k of [...new Set(colsUsed.map((d) => Math.floor(d / 4)))]) {
          const idx = k < 0 ? `select(xv${n} - ${-k}u, xv${n}, xbv < ${-k}u)` : `xv${n} + ${k}u`;
          const h = `h${n}_${nm(k)}`;
          if (concat) {
            L.push(`        var ${h} = vec4f(0.0);`);
            L.push(`        if (useA${n}) { ${h} = inA[${idx}]; } else { ${h} = inB[${idx}]; }`);
          } else {
            L.push(`        let ${h} = inA[${idx}];`);
          }
        }
        for (const d of colsUsed) {
          const k = Math.floor(d / 4);
          L.push(`        let x${n}_${nm(d)} = select(0.0, h${n}_${nm(k)}[${d - 4 * k}], vy && vx${nm(d)});`);
        }
        continue;
      }
      for (const d of colsUsed) {
        const x = `x${n}_${nm(d)}`;
        if (concat) {
          L.push(`        var ${x} = 0.0;`);
          L.push(
            `        if (useA${n}) { ${x} = inA[xc${n} + rb + cx${nm(d)}]; } else { ${x} = inB[xc${n} + rb + cx${nm(d)}]; }`,
          );
          L.push(`        ${x} = select(0.0, ${x}, vy && vx${nm(d)});`);
        } else {
          L.push(`        let ${x} = select(0.0, inA[xc${n} + rb + cx${nm(d)}], vy && vx${nm(d)});`);
        }
      }
    }
    for (const r of R) {
      for (const ky of Kx) {
        if (off(r, ky) !== dr) continue;
        for (const kx of Kx) {
          for (const n of N) {
            const v = `v${n}_${r}_${ky}_${kx}`;
            L.push(`        let ${v} = vec4f(${I.map((i) => `x${n}_${nm(off(i, kx))}`).join(', ')});`);
            for (const j of C) L.push(`        acc${j}_${n}_${ky * ks + kx} += dot(g${j}_${r}, ${v});`);
          }
        }
      }
    }
    L.push(`      }`);
  }
  const A: string[] = [];
  for (const j of C) for (const n of N) for (let t = 0; t < KK; t++) A.push(`  var acc${j}_${n}_${t} = 0.0;`);
  // each input channel of the block: its base in inA or inB (a channel past Cin reads the block's first, unwritten)
  const X: string[] = [];
  for (const n of N) {
    X.push(`  let cc${n} = select(ci0, ci0 + ${n}u, ci0 + ${n}u < Cin);`);
    if (concat) {
      X.push(`  let useA${n} = cc${n} < p.C1;`);
      X.push(
        `  let xc${n} = select((b * p.C2 + cc${n} - p.C1) * p.H * p.W, (b * p.C1 + cc${n}) * p.H * p.W, useA${n});`,
      );
    } else {
      X.push(`  let xc${n} = (b * p.C1 + cc${n}) * p.H * p.W;`);
    }
  }
  for (const j of C) X.push(`  let gc${j} = (b * p.Cout + min(co0 + ${j}u, p.Cout - 1u)) * p.Hout;`);
  const W: string[] = [];
  for (const j of C) {
    for (const n of N) {
      W.push(`  if (co0 + ${j}u < p.Cout && ci0 + ${n}u < Cin) {`);
      W.push(`    let o = base + ((co0 + ${j}u) * Cin + ci0 + ${n}u) * ${KK}u;`);
      for (let t = 0; t < KK; t++) W.push(`    partial[o + ${t}u] = acc${j}_${n}_${t};`);
      W.push(`  }`);
    }
  }

  return /* wgsl */ `
${DW_STRIDED_UNIFORM.wgsl}
@group(0) @binding(0) var<storage, read> inA: array<${vecX ? 'vec4f' : 'f32'}>;
@group(0) @binding(1) var<storage, read> inB: array<${vecX ? 'vec4f' : 'f32'}>;
@group(0) @binding(2) var<storage, read> ${vecG ? 'dOut4: array<vec4f>' : 'dOut: array<f32>'};
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;
@group(0) @binding(4) var<uniform> p: P;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  let Cin = p.C1 + p.C2;
  let nCoB = (p.Cout + ${RC - 1}u) / ${RC}u;
  let nCiB = (Cin + ${RCI - 1}u) / ${RCI}u;
${dwBandWgsl('nCiB', 'cib', 'p.Hout')}
  let co0 = cob * ${RC}u;
  let ci0 = cib * ${RCI}u;
${concat ? '' : '  _ = arrayLength(&inB); // keeps binding 1 in the layout'}
${X.join('\n')}
  let W4 = (p.Wout + 3u) / 4u;
${A.join('\n')}
  for (var y = y0; y < y1; y += ${RY}u) {
    let yb = ${up ? 'i32(y / 2u)' : 'i32(y * 2u)'};
    for (var x4 = 0u; x4 < W4; x4++) {
      let ox0 = x4 * 4u;
      let xb = ${up ? 'i32(ox0 / 2u)' : 'i32(ox0 * 2u)'};
      let xbv = u32(xb) / 4u;
${L.join('\n')}
    }
  }
  let base = slice * p.Cout * Cin * ${KK}u;
${W.join('\n')}
}
`;
}
