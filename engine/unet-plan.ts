// The SR3 U-Net (the reference's model/sr3_modules/unet.py) as a plan: the list of fused kernels with their shapes,
// parameter offsets and the tensors they read and write, independent of any device. The forward executor (unet.ts)
// and the trainer (train.ts, which walks the same plan backwards) both build from it.
import type { Activation } from '../shaders/activation.ts';
import type { UNetConfig } from '../weights-format/config.ts';
import { expectedParamShapes } from '../weights-format/unet.ts';
import { convOutSize, type ConvSpec } from './ops/conv2d.ts';
import type { GroupNormSpec } from './ops/groupnorm.ts';

export interface PTensor {
  id: number;
  name: string;
  shape: [number, number, number, number];
  bytes: number;
}

export type PlanOp =
  | { kind: 'gnstats'; label: string; a: PTensor; b: PTensor | null; spec: GroupNormSpec }
  | { kind: 'conv'; label: string; a: PTensor; b: PTensor | null; res: PTensor | null; out: PTensor; spec: ConvSpec }
  | {
      kind: 'attention';
      label: string;
      qkv: PTensor;
      out: PTensor;
      spec: { B: number; C: number; HW: number; label: string };
    };

/** A ResnetBlock's noise-level projection: emb[embOff + b*dimOut + c] = Linear(t)[b, c]. */
export interface EmbBlock {
  name: string;
  dimOut: number;
  embOff: number;
  wOff: number;
  bOff: number;
}

export interface UNetPlan {
  config: UNetConfig;
  B: number;
  H: number;
  W: number;
  /** Every parameter in the reference's order, at its offset in one flat buffer. */
  params: { order: [string, number[]][]; offsets: Map<string, number>; total: number };
  tensors: PTensor[];
  /** The first conv reads cat(inputA, inputB): the condition and y with splitInput, else x_in alone. */
  inputA: PTensor;
  inputB: PTensor | null;
  output: PTensor;
  ops: PlanOp[];
  /** the noise-level MLP; `act`: its activation (absent: Swish) */
  mlp: { inner: number; w1Off: number; b1Off: number; w2Off: number; b2Off: number; act?: Activation };
  embBlocks: EmbBlock[];
  embTotal: number;
  statsTotal: number;
  /** The reference's layer outputs (act.downs.i, act.mid.i, act.ups.i). */
  acts: [string, PTensor][];
}

/** Check that a model can run on a B x H x W input; throws a message that says what to change. */
export function checkShape(cfg: UNetConfig, batch: number, height: number, width: number): void {
  const levels = cfg.channel_mults.length;
  const f = 2 ** (levels - 1);
  if (!Number.isInteger(batch) || batch < 1) throw new Error(`batch must be a positive integer, got ${batch}`);
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) {
    throw new Error(`image size must be positive integers, got ${height}x${width}`);
  }
  if (height % f !== 0 || width % f !== 0) {
    throw new Error(
      `this model has ${levels} resolution levels, so height and width must be multiples of ${f}; got ${height}x${width} ` +
        `(pad the input to ${Math.ceil(height / f) * f}x${Math.ceil(width / f) * f})`,
    );
  }
}

export function planUNet(cfg: UNetConfig, B: number, H: number, W: number, splitInput = false): UNetPlan {
  checkShape(cfg, B, H, W);
  const G = cfg.norm_groups;
  const inner = cfg.inner_channel;
  // the config's activation on every spec that applies one (absent for Swish, the default)
  const act = cfg.activation && cfg.activation !== 'swish' ? { act: cfg.activation } : {};

  const order = [...expectedParamShapes(cfg)];
  const offsets = new Map<string, number>();
  let total = 0;
  for (const [name, shape] of order) {
    offsets.set(name, total);
    total += shape.reduce((a, b) => a * b, 1);
  }
  const off = (name: string): number => {
    const o = offsets.get(name);
    if (o === undefined) throw new Error(`model has no parameter ${name}`);
    return o;
  };

  const tensors: PTensor[] = [];
  const t = (name: string, C: number, h: number, w: number): PTensor => {
    const tt: PTensor = { id: tensors.length, name, shape: [B, C, h, w], bytes: B * C * h * w * 4 };
    tensors.push(tt);
    return tt;
  };
  let inputA: PTensor;
  let inputB: PTensor | null = null;
  if (splitInput) {
    const condC = cfg.in_channel - cfg.out_channel;
    if (condC < 1) {
      throw new Error(
        `this model takes ${cfg.in_channel} input channels for ${cfg.out_channel} output channels: it has no room for a condition image`,
      );
    }
    inputA = t('cond', condC, H, W);
    inputB = t('y', cfg.out_channel, H, W);
  } else {
    inputA = t('x_in', cfg.in_channel, H, W);
  }

  const ops: PlanOp[] = [];
  const embBlocks: EmbBlock[] = [];
  let embTotal = 0;
  let statsTotal = 0;

  const gnStats = (label: string, a: PTensor, b: PTensor | null): number => {
    const statsOff = statsTotal;
    statsTotal += B * G * 2;
    const [, C1, h, w] = a.shape;
    ops.push({
      kind: 'gnstats',
      label,
      a,
      b,
      spec: { B, C1, C2: b ? b.shape[1] : 0, HW: h * w, groups: G, statsOff, label },
    });
    return statsOff;
  };
  const conv = (
    label: string,
    a: PTensor,
    b: PTensor | null,
    Cout: number,
    o: {
      ks: 1 | 3;
      stride?: 1 | 2;
      upsample?: boolean;
      norm?: 0 | 1 | 2;
      normPrefix?: string;
      statsOff?: number;
      w: string;
      bias: string | null;
      embOff?: number;
      res?: PTensor | null;
    },
  ): PTensor => {
    const [, C1, h, w] = a.shape;
    const [Ho, Wo] = convOutSize({ Hin: h, Win: w, ks: o.ks, stride: o.stride ?? 1, upsample: o.upsample });
    const out = t(label, Cout, Ho, Wo);
    const spec: ConvSpec = {
      B,
      C1,
      C2: b ? b.shape[1] : 0,
      Hin: h,
      Win: w,
      Cout,
      ks: o.ks,
      stride: o.stride ?? 1,
      upsample: o.upsample,
      norm: o.norm ?? 0,
      groups: G,
      statsOff: o.statsOff,
      gammaOff: o.normPrefix ? off(`${o.normPrefix}.weight`) : 0,
      betaOff: o.normPrefix ? off(`${o.normPrefix}.bias`) : 0,
      wOff: off(o.w),
      bOff: o.bias ? off(o.bias) : -1,
      embOff: o.embOff,
      hasRes: !!o.res,
      label,
      ...act,
    };
    ops.push({ kind: 'conv', label, a, b, res: o.res ?? null, out, spec });
    return out;
  };

  const resBlock = (name: string, x: PTensor, skip: PTensor | null, dimOut: number, withAttn: boolean): PTensor => {
    const p = `${name}.res_block`;
    const embOff = embTotal;
    embTotal += B * dimOut;
    embBlocks.push({
      name: p,
      dimOut,
      embOff,
      wOff: off(`${p}.noise_func.noise_func.0.weight`),
      bOff: off(`${p}.noise_func.noise_func.0.bias`),
    });
    const s1 = gnStats(`${p}.block1.norm`, x, skip);
    const h = conv(`${p}.block1`, x, skip, dimOut, {
      ks: 3,
      norm: 2,
      normPrefix: `${p}.block1.block.0`,
      statsOff: s1,
      w: `${p}.block1.block.3.weight`,
      bias: `${p}.block1.block.3.bias`,
      embOff,
    });
    const dimIn = x.shape[1] + (skip ? skip.shape[1] : 0);
    const r =
      dimIn !== dimOut
        ? conv(`${p}.res_conv`, x, skip, dimOut, { ks: 1, w: `${p}.res_conv.weight`, bias: `${p}.res_conv.bias` })
        : x;
    const s2 = gnStats(`${p}.block2.norm`, h, null);
    let y = conv(`${p}.block2`, h, null, dimOut, {
      ks: 3,
      norm: 2,
      normPrefix: `${p}.block2.block.0`,
      statsOff: s2,
      w: `${p}.block2.block.3.weight`,
      bias: `${p}.block2.block.3.bias`,
      res: r,
    });
    if (withAttn) {
      const a = `${name}.attn`;
      const s3 = gnStats(`${a}.norm`, y, null);
      const qkv = conv(`${a}.qkv`, y, null, 3 * dimOut, {
        ks: 1,
        norm: 1,
        normPrefix: `${a}.norm`,
        statsOff: s3,
        w: `${a}.qkv.weight`,
        bias: null,
      });
      const core = t(`${a}.core`, dimOut, y.shape[2], y.shape[3]);
      const label = `${a}.core`;
      ops.push({
        kind: 'attention',
        label,
        qkv,
        out: core,
        spec: { B, C: dimOut, HW: y.shape[2] * y.shape[3], label },
      });
      y = conv(`${a}.out`, core, null, dimOut, { ks: 1, w: `${a}.out.weight`, bias: `${a}.out.bias`, res: y });
    }
    return y;
  };

  const acts: [string, PTensor][] = [];
  let x = conv('downs.0', inputA, inputB, inner, { ks: 3, w: 'downs.0.weight', bias: 'downs.0.bias' });
  acts.push(['act.downs.0', x]);
  const feats: PTensor[] = [x];
  const mults = cfg.channel_mults;
  let idx = 1;
  for (let lvl = 0; lvl < mults.length; lvl++) {
    const ch = inner * mults[lvl];
    const attn = cfg.attn_levels.includes(lvl);
    for (let r = 0; r < cfg.res_blocks; r++) {
      x = resBlock(`downs.${idx}`, x, null, ch, attn);
      acts.push([`act.downs.${idx}`, x]);
      feats.push(x);
      idx++;
    }
    if (lvl !== mults.length - 1) {
      x = conv(`downs.${idx}`, x, null, x.shape[1], {
        ks: 3,
        stride: 2,
        w: `downs.${idx}.conv.weight`,
        bias: `downs.${idx}.conv.bias`,
      });
      acts.push([`act.downs.${idx}`, x]);
      feats.push(x);
      idx++;
    }
  }
  x = resBlock('mid.0', x, null, x.shape[1], true);
  acts.push(['act.mid.0', x]);
  x = resBlock('mid.1', x, null, x.shape[1], false);
  acts.push(['act.mid.1', x]);
  idx = 0;
  for (let lvl = mults.length - 1; lvl >= 0; lvl--) {
    const ch = inner * mults[lvl];
    const attn = cfg.attn_levels.includes(lvl);
    for (let r = 0; r < cfg.res_blocks + 1; r++) {
      x = resBlock(`ups.${idx}`, x, feats.pop()!, ch, attn);
      acts.push([`act.ups.${idx}`, x]);
      idx++;
    }
    if (lvl !== 0) {
      x = conv(`ups.${idx}`, x, null, x.shape[1], {
        ks: 3,
        upsample: true,
        w: `ups.${idx}.conv.weight`,
        bias: `ups.${idx}.conv.bias`,
      });
      acts.push([`act.ups.${idx}`, x]);
      idx++;
    }
  }
  const sf = gnStats('final_conv.norm', x, null);
  const output = conv('final_conv', x, null, cfg.out_channel, {
    ks: 3,
    norm: 2,
    normPrefix: 'final_conv.block.0',
    statsOff: sf,
    w: 'final_conv.block.3.weight',
    bias: 'final_conv.block.3.bias',
  });

  return {
    config: cfg,
    B,
    H,
    W,
    params: { order, offsets, total },
    tensors,
    inputA,
    inputB,
    output,
    ops,
    mlp: {
      inner,
      w1Off: off('noise_level_mlp.1.weight'),
      b1Off: off('noise_level_mlp.1.bias'),
      w2Off: off('noise_level_mlp.3.weight'),
      b2Off: off('noise_level_mlp.3.bias'),
      ...act,
    },
    embBlocks,
    embTotal,
    statsTotal,
    acts,
  };
}

/** The tensors an op reads. */
export function opInputs(op: PlanOp): PTensor[] {
  switch (op.kind) {
    case 'gnstats':
      return op.b ? [op.a, op.b] : [op.a];
    case 'conv':
      return [op.a, ...(op.b ? [op.b] : []), ...(op.res ? [op.res] : [])];
    case 'attention':
      return [op.qkv];
  }
}

/** The tensor an op writes (null for GroupNorm statistics, which go to the stats buffer). */
export function opOutput(op: PlanOp): PTensor | null {
  return op.kind === 'gnstats' ? null : op.out;
}

/** Every parameter as one flat float32 array in the plan's order. */
export function packParams(plan: UNetPlan, param: (name: string) => Float32Array): Float32Array {
  const flat = new Float32Array(plan.params.total);
  for (const [name, shape] of plan.params.order) {
    const v = param(name);
    const n = shape.reduce((a, b) => a * b, 1);
    if (v.length !== n) throw new Error(`parameter ${name}: ${v.length} values, expected ${n} for shape [${shape}]`);
    flat.set(v, plan.params.offsets.get(name)!);
  }
  return flat;
}

/**
 * The multiply-adds (x2) of one forward, split into the convolutions' (linear in the pixels) and attention's
 * (quadratic: every position against every other). Tiling asks this: the attention of a model trained on small
 * crops grows with the square of a tile's area and dominates big tiles.
 */
export function planFlops(plan: UNetPlan): { conv: number; attention: number } {
  let conv = 0;
  let attention = 0;
  for (const op of plan.ops) {
    if (op.kind === 'conv') {
      const s = op.spec;
      const [h, w] = convOutSize(s);
      conv += 2 * s.B * s.Cout * (s.C1 + s.C2) * s.ks * s.ks * h * w;
    } else if (op.kind === 'attention') {
      // scores q.k and the weighted sum of v, both HW x HW x C
      attention += 4 * op.spec.B * op.spec.HW * op.spec.HW * op.spec.C;
    }
  }
  return { conv, attention };
}

/**
 * Where each activation lives: tensors whose lifetimes do not overlap share a buffer. A tensor's buffer returns to
 * the pool after its last reader, and the next output takes the smallest pooled buffer that holds it (best fit), or a
 * new one. `persistent` tensors (the inputs, the output, and with `keep` the reference's layer outputs) get buffers
 * of their own. Pure: UNet.build allocates from it and tiling asks it what a tile takes.
 */
export interface MemoryPlan {
  /** every buffer's size in bytes */
  buffers: number[];
  /** the buffer of each tensor, an index into `buffers` */
  of: Map<PTensor, number>;
  /** bytes of all buffers, and of every output without reuse */
  bytes: number;
  unshared: number;
}

export function planMemory(plan: UNetPlan, keep = false): MemoryPlan {
  const buffers: number[] = [];
  const of = new Map<PTensor, number>();
  const alloc = (t: PTensor, reuse?: number) => {
    const i = reuse ?? buffers.push(t.bytes) - 1;
    of.set(t, i);
  };
  const persistent = new Set<PTensor>([plan.inputA, plan.output, ...(plan.inputB ? [plan.inputB] : [])]);
  if (keep) for (const [, a] of plan.acts) persistent.add(a);
  for (const t of persistent) alloc(t);
  const lastUse = new Map<PTensor, number>();
  plan.ops.forEach((op, i) => {
    for (const t of opInputs(op)) lastUse.set(t, i);
  });
  const pool: number[] = [];
  let unshared = 0;
  plan.ops.forEach((op, i) => {
    const o = opOutput(op);
    if (o) {
      unshared += o.bytes;
      if (!persistent.has(o)) {
        let best = -1;
        for (let j = 0; j < pool.length; j++)
          if (buffers[pool[j]] >= o.bytes && (best < 0 || buffers[pool[j]] < buffers[pool[best]])) best = j;
        alloc(o, best >= 0 ? pool.splice(best, 1)[0] : undefined);
      }
    }
    for (const t of new Set(opInputs(op))) if (lastUse.get(t) === i && !persistent.has(t)) pool.push(of.get(t)!);
  });
  return { buffers, of, bytes: buffers.reduce((a, b) => a + b, 0), unshared };
}
