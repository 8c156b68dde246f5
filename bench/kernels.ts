// Kernel benchmarks: conv2d (with its fusions) and its backward, GroupNorm statistics and attention on random data,
// one op timed in isolation. FLOP counts are the useful arithmetic (2 per multiply-add; a conv's backward passes count
// the forward's 2*M*N*K each); bytes are the minimum traffic (every input read once, every output written once), so
// GB/s is an effective, not a measured, bandwidth.
import { encodeDispatch, type Dispatch, type GpuContext } from '../engine/gpu.ts';
import * as K from '../engine/kernels.ts';
import * as KB from '../engine/kernels-backward.ts';
import { timePass, type Timing, type TimingOptions } from './timing.ts';

export interface ConvCase {
  kind: 'conv';
  name: string;
  B: number;
  /** input channels: C1 from input A, C2 from input B (the skip concatenation) */
  C1: number;
  C2?: number;
  H: number;
  W: number;
  Cout: number;
  ks: 1 | 3;
  stride?: 1 | 2;
  upsample?: boolean;
  /** GroupNorm (+Swish) fused into the input load, with this many groups */
  norm?: 0 | 1 | 2;
  groups?: number;
  emb?: boolean;
  res?: boolean;
  /**
   * A backward pass instead of the forward, recorded as engine/train.ts records it (KB.conv2dBackward):
   * 'dX' the input gradient (KB.conv2dBackwardInput, added into dA/dB as in training; when the forward normalised its
   * input, into scratch and then through KB.groupNormBackward, which also gives dGamma/dBeta), 'dW' the parameter
   * gradients (bias (+embedding) channel sums and KB.conv2dBackwardWeight, split over the reduction through scratch
   * as in training; a normalised input is materialised once first).
   */
  pass?: ConvPass;
}

export type ConvPass = 'dX' | 'dW';

export interface GroupNormCase {
  kind: 'groupnorm';
  name: string;
  B: number;
  C: number;
  H: number;
  W: number;
  groups: number;
}

export interface AttentionCase {
  kind: 'attention';
  name: string;
  B: number;
  C: number;
  H: number;
  W: number;
}

export type KernelCase = ConvCase | GroupNormCase | AttentionCase;

export interface KernelResult {
  name: string;
  kind: 'kernel';
  /** the op: conv, groupnorm or attention */
  op: KernelCase['kind'];
  /** forward, or a conv's backward pass (dX, dW) */
  pass: 'forward' | ConvPass;
  /** dispatches in one repetition */
  dispatches: number;
  ms: number;
  gflops: number | null;
  gbps: number;
  flop: number;
  bytes: number;
  timing: Timing;
}

/** A 3x3 conv 'C1->Cout HxW bB' name, as the issue spells it (a backward pass adds ' dX' or ' dW'). */
export function convName(c: Omit<ConvCase, 'name' | 'kind'>): string {
  const cin = c.C2 ? `${c.C1}+${c.C2}` : `${c.C1}`;
  const extras = [
    c.stride === 2 ? 's2' : '',
    c.upsample ? 'up2' : '',
    c.norm === 2 ? 'gn+swish' : c.norm === 1 ? 'gn' : '',
    c.emb ? 'emb' : '',
    c.res ? 'res' : '',
    c.pass ?? '',
  ].filter(Boolean);
  return `conv${c.ks}x${c.ks} ${cin}->${c.Cout} ${c.H}x${c.W} b${c.B}${extras.length ? ` ${extras.join(' ')}` : ''}`;
}

export const conv = (c: Omit<ConvCase, 'name' | 'kind'>): ConvCase => ({ kind: 'conv', name: convName(c), ...c });
/** The conv's backward cases: 'NAME dX' and 'NAME dW' (the forward's name unchanged). */
export const convGrads = (c: Omit<ConvCase, 'name' | 'kind' | 'pass'>, passes: ConvPass[] = ['dX', 'dW']): ConvCase[] =>
  passes.map((pass) => conv({ ...c, pass }));
export const gn = (B: number, C: number, H: number, W: number, groups: number): GroupNormCase => ({
  kind: 'groupnorm',
  name: `groupnorm-stats ${C}ch/${groups}g ${H}x${W} b${B}`,
  B,
  C,
  H,
  W,
  groups,
});
export const attn = (B: number, C: number, H: number, W: number): AttentionCase => ({
  kind: 'attention',
  name: `attention ${C}ch ${H}x${W} b${B}`,
  B,
  C,
  H,
  W,
});

/** Deterministic values in [-1, 1) (cheap LCG: only the timing matters, but NaN-free inputs keep it honest). */
function fill(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (((s >>> 8) / 16777216) * 2 - 1) * scale;
  }
  return out;
}

export async function benchKernel(ctx: GpuContext, c: KernelCase, t: TimingOptions): Promise<KernelResult> {
  const made: GPUBuffer[] = [];
  const buf = (bytes: number, label: string) => {
    const b = ctx.buffer(bytes, label);
    made.push(b);
    return b;
  };
  const up = (data: Float32Array, label: string) => {
    const b = ctx.upload(data, label);
    made.push(b);
    return b;
  };
  try {
    if (c.kind === 'conv') {
      const C2 = c.C2 ?? 0;
      const Cin = c.C1 + C2;
      const stride = c.stride ?? 1;
      const [Ho, Wo] = K.convOutSize({ Hin: c.H, Win: c.W, ks: c.ks, stride, upsample: c.upsample });
      const G = c.groups ?? 1;
      const nW = c.Cout * Cin * c.ks * c.ks;
      // params: weights, bias, gamma, beta
      const params = up(fill(nW + c.Cout + 2 * Cin, 1, 1 / Math.sqrt(Cin * c.ks * c.ks)), 'bench.params');
      const a = up(fill(c.B * c.C1 * c.H * c.W, 2), 'bench.a');
      const b = C2 ? up(fill(c.B * C2 * c.H * c.W, 3), 'bench.b') : undefined;
      const stats = c.norm ? buf(c.B * G * 2 * 4, 'bench.stats') : undefined;
      const outN = c.B * c.Cout * Ho * Wo;
      // the forward's embedding, residual and output (a backward pass needs none of them)
      const emb = c.emb && !c.pass ? up(fill(c.B * c.Cout, 4), 'bench.emb') : undefined;
      const res = c.res && !c.pass ? up(fill(outN, 5), 'bench.res') : undefined;
      const out = c.pass ? undefined : buf(outN * 4, 'bench.out');
      if (stats) {
        const s = new Float32Array(c.B * G * 2);
        for (let i = 0; i < s.length; i += 2) s[i + 1] = 1;
        ctx.write(stats, s);
      }
      const spec = {
        B: c.B,
        C1: c.C1,
        C2,
        Hin: c.H,
        Win: c.W,
        Cout: c.Cout,
        ks: c.ks,
        stride,
        upsample: c.upsample,
        norm: c.norm ?? 0,
        groups: G,
        statsOff: 0,
        gammaOff: nW + c.Cout,
        betaOff: nW + c.Cout + Cin,
        wOff: 0,
        bOff: nW,
        embOff: c.emb ? 0 : -1,
        label: c.name,
      };
      const flop = 2 * c.B * c.Cout * Cin * c.ks * c.ks * Ho * Wo;
      const inN = c.B * Cin * c.H * c.W;
      let ds: Dispatch[];
      let bytes: number;
      if (!c.pass) {
        ds = await K.conv2d(ctx, { ...spec, hasRes: c.res }, { params, a, b, stats, emb, res, out: out! });
        bytes = 4 * (inN + nW + outN * (c.res ? 2 : 1));
      } else {
        // the backward reads dOut (random) and, as in training, the forward's inputs and saved stats
        const dOut = up(fill(outN, 6), 'bench.dOut');
        const grads = buf(params.size, 'bench.grads');
        if (c.pass === 'dX') {
          const dA = buf(c.B * c.C1 * c.H * c.W * 4, 'bench.dA');
          const dB = C2 ? buf(c.B * C2 * c.H * c.W * 4, 'bench.dB') : undefined;
          if (!spec.norm) {
            ds = await KB.conv2dBackwardInput(ctx, spec, { params, dOut, dA, dB }, { accumulate: true });
          } else {
            const sz = KB.conv2dBackwardScratchBytes(spec);
            const dYA = buf(sz.dYA, 'bench.dYA');
            const dYB = C2 ? buf(sz.dYB, 'bench.dYB') : undefined;
            ds = [
              ...(await KB.conv2dBackwardInput(ctx, spec, { params, dOut, dA: dYA, dB: dYB })),
              ...(await KB.groupNormBackward(
                ctx,
                {
                  B: c.B,
                  C1: c.C1,
                  C2,
                  HW: c.H * c.W,
                  groups: G,
                  statsOff: 0,
                  gammaOff: spec.gammaOff,
                  betaOff: spec.betaOff,
                  withAct: spec.norm === 2,
                  label: c.name,
                },
                { params, a, b, dYA, dYB, stats: stats!, grads, scratch: buf(sz.gn, 'bench.gn_scratch'), dA, dB },
                { accumulate: true },
              )),
            ];
          }
          // dOut and the weights read, dX written (and the input itself read when normalised)
          bytes = 4 * (outN + nW + inN * (spec.norm ? 2 : 1));
        } else {
          const sz = KB.conv2dBackwardScratchBytes(spec);
          const scratch = { dw: buf(sz.dw, 'bench.dw_scratch'), xn: spec.norm ? buf(sz.xn, 'bench.xn') : undefined };
          const dEmb = c.emb ? buf(c.B * c.Cout * 4, 'bench.dEmb') : undefined;
          ds = await KB.conv2dBackward(
            ctx,
            spec,
            { params, a, b, stats, dOut, grads, dEmb, scratch },
            { inputGrad: false },
          );
          // the input and dOut read, dW written
          bytes = 4 * (inN + outN + nW);
        }
      }
      const timing = await timePass(
        ctx,
        (p) => {
          for (const d of ds) encodeDispatch(p, d); // split-K's reduction among them
        },
        t,
      );
      return result(c, timing, flop, bytes, ds.length);
    }
    if (c.kind === 'groupnorm') {
      const HW = c.H * c.W;
      const a = up(fill(c.B * c.C * HW, 6), 'bench.a');
      const stats = buf(c.B * c.groups * 2 * 4, 'bench.stats');
      const ds = await K.groupNormStats(
        ctx,
        { B: c.B, C1: c.C, C2: 0, HW, groups: c.groups, statsOff: 0, label: c.name },
        { a, stats },
      );
      const timing = await timePass(
        ctx,
        (p) => {
          for (const d of ds) encodeDispatch(p, d); // with the split form's combine pass
        },
        t,
      );
      // two passes over the input (mean, then centred variance)
      return result(c, timing, null, 2 * 4 * c.B * c.C * HW, 1);
    }
    const HW = c.H * c.W;
    const qkv = up(fill(c.B * 3 * c.C * HW, 7), 'bench.qkv');
    const out = buf(c.B * c.C * HW * 4, 'bench.out');
    const ds = await K.attention(ctx, { B: c.B, C: c.C, HW, label: c.name }, { qkv, out });
    const timing = await timePass(
      ctx,
      (p) => {
        for (const d of ds) encodeDispatch(p, d);
      },
      t,
    );
    // q.k for every (query, key) pair and the weighted sum of v: 2 * 2 * HW^2 * C per image
    return result(c, timing, 4 * c.B * HW * HW * c.C, 4 * c.B * 4 * c.C * HW, 1);
  } finally {
    await ctx.device.queue.onSubmittedWorkDone();
    for (const b of made) b.destroy();
  }
}

function result(c: KernelCase, timing: Timing, flop: number | null, bytes: number, dispatches: number): KernelResult {
  const s = timing.ms / 1e3;
  return {
    name: c.name,
    kind: 'kernel',
    op: c.kind,
    pass: (c.kind === 'conv' && c.pass) || 'forward',
    dispatches,
    ms: timing.ms,
    gflops: flop === null ? null : flop / s / 1e9,
    gbps: bytes / s / 1e9,
    flop: flop ?? 0,
    bytes,
    timing,
  };
}
