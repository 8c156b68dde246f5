// The SR3 U-Net forward pass: the plan (unet-plan.ts) recorded as WGSL dispatches, once per (model, batch, size):
// pipelines, bind groups, uniforms and buffers are created up front, activation buffers are shared between tensors
// whose lifetimes do not overlap, and a forward pass is a replay.
import type { UNetConfig } from '../weights-format/config.ts';
import { encodeDispatch, fmtBytes, type Dispatch, type GpuContext } from './gpu.ts';
import * as K from './kernels.ts';
import { groupNormApply } from './kernels-backward.ts';
import { checkShape, opInputs, opOutput, packParams, planUNet, type PlanOp, type PTensor, type UNetPlan } from './unet-plan.ts';

/** What the builder needs of a model: its config and float32 parameters by reference name. */
export interface UNetWeights {
  config: UNetConfig;
  param(name: string): Float32Array;
}

export interface UNetBuildOptions {
  batch: number;
  height: number;
  width: number;
  /** Keep every layer's output (act.noise_emb, act.downs.i, act.mid.i, act.ups.i) readable; disables buffer reuse. */
  keepActivations?: boolean;
  /**
   * Take the input as two buffers, `cond` [B, in_channel - out_channel, H, W] and `y` [B, out_channel, H, W], read by
   * the first conv as their concatenation cat(cond, y) (no copy): what the samplers use.
   */
  splitInput?: boolean;
  /** Prefix of the buffers' labels (default 'unet'). */
  label?: string;
  /**
   * Write each GroupNorm(+Swish) out before its conv instead of fusing it into the conv's input load (default: on a
   * software device, where the fused form recomputes exp() in every tap; off on GPUs, where it saves a round trip).
   */
  materializeNorm?: boolean;
}

/** Device buffers for a plan's parameters, embeddings and statistics, and the dispatches of the noise-level MLP. */
export interface PlanBuffers {
  params: GPUBuffer;
  /** noise level [B] in, sinusoidal encoding, hidden layer, embedding t [B, inner] */
  level: GPUBuffer;
  enc: GPUBuffer;
  hidden: GPUBuffer;
  t: GPUBuffer;
  emb: GPUBuffer;
  stats: GPUBuffer;
}

export function allocPlanBuffers(ctx: GpuContext, plan: UNetPlan, params: Float32Array, label: string): PlanBuffers {
  const { B } = plan;
  const inner = plan.mlp.inner;
  if (params.byteLength > ctx.limits.maxStorageBufferBindingSize) {
    throw new Error(
      `this model's parameters take ${fmtBytes(params.byteLength)}, more than one storage binding of this device can hold ` +
        `(maxStorageBufferBindingSize ${fmtBytes(ctx.limits.maxStorageBufferBindingSize)}): run it on a GPU adapter ` +
        '(they allow 2 GiB and more), or use a smaller model',
    );
  }
  return {
    params: ctx.upload(params, `${label}.params`),
    level: ctx.buffer(B * 4, `${label}.noise_level`),
    enc: ctx.buffer(B * inner * 4, `${label}.noise_enc`),
    hidden: ctx.buffer(B * 4 * inner * 4, `${label}.noise_hidden`),
    t: ctx.buffer(B * inner * 4, `${label}.noise_emb`),
    emb: ctx.buffer(Math.max(plan.embTotal, 1) * 4, `${label}.block_emb`),
    stats: ctx.buffer(Math.max(plan.statsTotal, 1) * 4, `${label}.gn_stats`),
  };
}

/** The noise-level MLP and every block's projection into the embedding buffer. */
export async function recordEmbedding(ctx: GpuContext, plan: UNetPlan, pb: PlanBuffers): Promise<Dispatch[]> {
  const { B } = plan;
  const { inner, w1Off, b1Off, w2Off, b2Off } = plan.mlp;
  const d: Dispatch[] = [
    await K.positionalEncoding(ctx, { B, dim: inner, label: 'noise_level_mlp.0' }, { level: pb.level, out: pb.enc }),
    await K.linear(ctx, { B, K: inner, N: 4 * inner, wOff: w1Off, bOff: b1Off, label: 'noise_level_mlp.1' }, { params: pb.params, inp: pb.enc, out: pb.hidden }),
    await K.linear(ctx, { B, K: 4 * inner, N: inner, wOff: w2Off, bOff: b2Off, swishIn: true, label: 'noise_level_mlp.3' }, { params: pb.params, inp: pb.hidden, out: pb.t }),
  ];
  for (const e of plan.embBlocks) {
    d.push(await K.linear(ctx, { B, K: inner, N: e.dimOut, wOff: e.wOff, bOff: e.bOff, outOff: e.embOff, label: `${e.name}.noise_func` }, { params: pb.params, inp: pb.t, out: pb.emb }));
  }
  return d;
}

/**
 * One op of the plan as dispatches, given a buffer for every tensor. With `xn` (a scratch of normScratchBytes), a
 * conv's GroupNorm(+Swish) is written out once by its own kernel and the conv reads the result: cheaper where
 * transcendental functions are slow (a software device) than normalising in every conv tap.
 */
export async function recordOp(ctx: GpuContext, op: PlanOp, pb: PlanBuffers, buf: (t: PTensor) => GPUBuffer, xn?: GPUBuffer): Promise<Dispatch[]> {
  switch (op.kind) {
    case 'gnstats':
      return [await K.groupNormStats(ctx, op.spec, { a: buf(op.a), b: op.b ? buf(op.b) : undefined, stats: pb.stats })];
    case 'conv': {
      const s = op.spec;
      const emb = s.embOff !== undefined && s.embOff >= 0 ? pb.emb : undefined;
      const res = op.res ? buf(op.res) : undefined;
      if (xn && s.norm) {
        const apply = await groupNormApply(
          ctx,
          { B: s.B, C1: s.C1, C2: s.C2, HW: s.Hin * s.Win, groups: s.groups ?? 1, statsOff: s.statsOff ?? 0, gammaOff: s.gammaOff ?? 0, betaOff: s.betaOff ?? 0, swish: s.norm === 2, label: `${op.label}.norm` },
          { params: pb.params, a: buf(op.a), b: op.b ? buf(op.b) : undefined, stats: pb.stats, out: xn },
        );
        const conv = await K.conv2d(ctx, { ...s, C1: s.C1 + s.C2, C2: 0, norm: 0 }, { params: pb.params, a: xn, emb, res, out: buf(op.out) });
        return [apply, conv];
      }
      return [await K.conv2d(ctx, s, { params: pb.params, a: buf(op.a), b: op.b ? buf(op.b) : undefined, stats: s.norm ? pb.stats : undefined, emb, res, out: buf(op.out) })];
    }
    case 'attention':
      return [await K.attention(ctx, op.spec, { qkv: buf(op.qkv), out: buf(op.out) })];
  }
}

/** Bytes of the scratch recordOp needs to materialise the plan's normalisations (0 when none). */
export function normScratchBytes(plan: UNetPlan): number {
  let n = 0;
  for (const op of plan.ops) if (op.kind === 'conv' && op.spec.norm) n = Math.max(n, op.spec.B * (op.spec.C1 + op.spec.C2) * op.spec.Hin * op.spec.Win * 4);
  return n;
}

export class UNet {
  readonly dispatches: Dispatch[] = [];
  /** Input [B, in_channel, H, W] (null with splitInput). */
  readonly input: GPUBuffer | null = null;
  /** With splitInput: the condition [B, in_channel - out_channel, H, W] and the noisy image [B, out_channel, H, W]. */
  readonly cond: GPUBuffer | null = null;
  readonly y: GPUBuffer | null = null;
  /** Noise level [B] (the network is conditioned on sqrt(gamma)). */
  readonly noiseLevel: GPUBuffer;
  /** Output eps [B, out_channel, H, W]. */
  readonly output: GPUBuffer;
  readonly activations = new Map<string, { buf: GPUBuffer; shape: number[] }>();
  /** Bytes of activation buffers after reuse, and what they would take without it. */
  readonly memory = { activations: 0, unshared: 0, params: 0 };
  readonly plan: UNetPlan;
  private owned: GPUBuffer[] = [];

  private constructor(
    readonly ctx: GpuContext,
    readonly config: UNetConfig,
    readonly batch: number,
    readonly height: number,
    readonly width: number,
    plan: UNetPlan,
    pb: PlanBuffers,
  ) {
    this.plan = plan;
    this.noiseLevel = pb.level;
    this.output = undefined as unknown as GPUBuffer;
  }

  /** Check that a model can run on a B x H x W input; throws a message that says what to change. */
  static checkShape(cfg: UNetConfig, batch: number, height: number, width: number): void {
    checkShape(cfg, batch, height, width);
  }

  static async build(ctx: GpuContext, weights: UNetWeights, opts: UNetBuildOptions): Promise<UNet> {
    const { batch: B, height: H, width: W } = opts;
    const plan = planUNet(weights.config, B, H, W, !!opts.splitInput);
    const flat = packParams(plan, (n) => weights.param(n));
    const pb = allocPlanBuffers(ctx, plan, flat, opts.label ?? 'unet');
    const net = new UNet(ctx, weights.config, B, H, W, plan, pb);
    net.owned.push(...Object.values(pb));
    net.memory.params = flat.byteLength;
    await net.compile(pb, !!opts.keepActivations, opts.label ?? 'unet', opts.materializeNorm ?? ctx.adapter.isSoftware);
    return net;
  }

  private async compile(pb: PlanBuffers, keep: boolean, label: string, materialize: boolean): Promise<void> {
    const ctx = this.ctx;
    const plan = this.plan;
    const bufs = new Map<PTensor, GPUBuffer>();
    const persistent = new Set<PTensor>([plan.inputA, plan.output, ...(plan.inputB ? [plan.inputB] : [])]);
    if (keep) for (const [, a] of plan.acts) persistent.add(a);
    const alloc = (t: PTensor, reuse: GPUBuffer | undefined) => {
      const b = reuse ?? this.own(ctx.buffer(t.bytes, `${label}.${t.name}`));
      if (!reuse) this.memory.activations += b.size;
      bufs.set(t, b);
    };
    for (const t of persistent) alloc(t, undefined);

    // Memory plan: a tensor's buffer returns to the pool after its last reader; best fit from the pool.
    const lastUse = new Map<PTensor, number>();
    plan.ops.forEach((op, i) => opInputs(op).forEach((t) => lastUse.set(t, i)));
    const pool: GPUBuffer[] = [];
    plan.ops.forEach((op, i) => {
      const o = opOutput(op);
      if (o) {
        this.memory.unshared += o.bytes;
        if (!persistent.has(o)) {
          let best = -1;
          for (let j = 0; j < pool.length; j++) if (pool[j].size >= o.bytes && (best < 0 || pool[j].size < pool[best].size)) best = j;
          alloc(o, best >= 0 ? pool.splice(best, 1)[0] : undefined);
        }
      }
      for (const t of new Set(opInputs(op))) if (lastUse.get(t) === i && !persistent.has(t)) pool.push(bufs.get(t)!);
    });

    this.dispatches.push(...(await recordEmbedding(ctx, plan, pb)));
    const xn = materialize && normScratchBytes(plan) ? this.own(ctx.buffer(normScratchBytes(plan), `${label}.norm_scratch`)) : undefined;
    if (xn) this.memory.activations += xn.size;
    for (const op of plan.ops) this.dispatches.push(...(await recordOp(ctx, op, pb, (t) => bufs.get(t)!, xn)));
    const self = this as { output: GPUBuffer; input: GPUBuffer | null; cond: GPUBuffer | null; y: GPUBuffer | null };
    self.output = bufs.get(plan.output)!;
    if (plan.inputB) {
      self.cond = bufs.get(plan.inputA)!;
      self.y = bufs.get(plan.inputB)!;
    } else self.input = bufs.get(plan.inputA)!;
    if (keep) {
      this.activations.set('act.noise_emb', { buf: pb.t, shape: [plan.B, 1, plan.mlp.inner] });
      for (const [name, a] of plan.acts) this.activations.set(name, { buf: bufs.get(a)!, shape: a.shape });
    }
    this.memory.activations += pb.enc.size + pb.hidden.size + pb.t.size + pb.emb.size + pb.stats.size;
  }

  private own(b: GPUBuffer): GPUBuffer {
    this.owned.push(b);
    return b;
  }

  /** Record one forward pass into an open compute pass. */
  encode(pass: GPUComputePassEncoder): void {
    for (const d of this.dispatches) encodeDispatch(pass, d);
  }

  /** eps = UNet(x_in, noise_level): upload, run, read back. */
  async forward(xIn: Float32Array, noiseLevel: Float32Array): Promise<Float32Array> {
    const { in_channel, out_channel } = this.config;
    const B = this.batch;
    const n = B * in_channel * this.height * this.width;
    if (!this.input) throw new Error('this U-Net was built with a split input (cond, y): write those buffers and call run()');
    if (xIn.length !== n) {
      throw new Error(`x_in has ${xIn.length} values; this U-Net was built for [${B}, ${in_channel}, ${this.height}, ${this.width}] = ${n}`);
    }
    if (noiseLevel.length !== B) throw new Error(`noise_level has ${noiseLevel.length} values; expected one per batch element (${B})`);
    this.ctx.write(this.input, xIn);
    this.ctx.write(this.noiseLevel, noiseLevel);
    this.run();
    return this.ctx.read(this.output, B * out_channel * this.height * this.width * 4);
  }

  /** Submit one forward pass over what is already in the input buffers and `noiseLevel`. */
  run(): void {
    const enc = this.ctx.device.createCommandEncoder({ label: 'unet.forward' });
    const pass = enc.beginComputePass({ label: 'unet.forward' });
    this.encode(pass);
    pass.end();
    this.ctx.device.queue.submit([enc.finish()]);
  }

  describeMemory(): string {
    const m = this.memory;
    return `params ${fmtBytes(m.params)}, activations ${fmtBytes(m.activations)} (${fmtBytes(m.unshared)} without reuse)`;
  }

  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned = [];
  }
}
