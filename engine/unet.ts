// The SR3 U-Net forward pass: the plan (unet-plan.ts) recorded as WGSL dispatches, once per (model, batch, size):
// pipelines, bind groups, uniforms and buffers are created up front, activation buffers are shared between tensors
// whose lifetimes do not overlap, and a forward pass is a replay.
import type { UNetConfig } from '../weights-format/config.ts';
import { encodeDispatch, fmtBytes, type Dispatch, type GpuContext } from './gpu.ts';
import { linear, positionalEncoding } from './ops/linear.ts';
import { planOpFamily } from './ops/plan-ops.ts';
import { materializeNorm } from './options.ts';
import { checkShape, packParams, planMemory, planUNet, type PlanOp, type PTensor, type UNetPlan } from './unet-plan.ts';

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
   * Write each GroupNorm(+Swish) out before its conv instead of fusing it into the conv's input load (default: the
   * context's EngineOptions.norm; 'auto' materialises on the software paths, where the fused form recomputes exp() in
   * every tap, and fuses on the GPU ones, where it saves a round trip).
   */
  materializeNorm?: boolean;
  /**
   * The largest parameter binding to use (default: the device's maxStorageBufferBindingSize). Parameters beyond it are
   * split over several buffers at layer boundaries, so a model larger than one binding still runs (tests set less).
   */
  maxParamBindingBytes?: number;
  /** The model's parameters already on the device (uploadUNetParams), shared instead of uploaded again; not destroyed with this U-Net. */
  params?: UNetParams;
}

/** A slice [start, end) of the flat parameter array in its own buffer (offsets inside it are off - start). */
export interface ParamChunk {
  start: number;
  end: number;
  buf: GPUBuffer;
}

/** Device buffers for a plan's parameters, embeddings and statistics, and the dispatches of the noise-level MLP. */
export interface PlanBuffers {
  /** the whole flat parameter array in one buffer, or null where it was split into chunks (inference only) */
  params: GPUBuffer | null;
  /** the parameters as bound: one chunk (the whole buffer), or several when they exceed one storage binding */
  chunks: ParamChunk[];
  /** noise level [B] in, sinusoidal encoding, hidden layer, embedding t [B, inner] */
  level: GPUBuffer;
  enc: GPUBuffer;
  hidden: GPUBuffer;
  t: GPUBuffer;
  emb: GPUBuffer;
  stats: GPUBuffer;
}

export function planBufferList(pb: PlanBuffers): GPUBuffer[] {
  return [pb.level, pb.enc, pb.hidden, pb.t, pb.emb, pb.stats, ...pb.chunks.map((c) => c.buf)];
}

export interface ParamBindingOptions {
  /** allow splitting the parameters over several buffers when they exceed one binding (inference; default false) */
  split?: boolean;
  /** the largest binding to use, in bytes (default: the device's maxStorageBufferBindingSize; tests set less) */
  maxBindingBytes?: number;
}

/** [offset, length] of every parameter range one dispatch reads (the ranges one binding must hold together). */
function dispatchRanges(plan: UNetPlan): [number, number][][] {
  const out: [number, number][][] = [];
  const { inner, w1Off, b1Off, w2Off, b2Off } = plan.mlp;
  out.push(
    linearRanges({ wOff: w1Off, bOff: b1Off, K: inner, N: 4 * inner }),
    linearRanges({ wOff: w2Off, bOff: b2Off, K: 4 * inner, N: inner }),
  );
  for (const e of plan.embBlocks) out.push(linearRanges({ wOff: e.wOff, bOff: e.bOff, K: inner, N: e.dimOut }));
  for (const op of plan.ops) {
    const r = planOpFamily(op).paramRanges(op);
    if (r.length) out.push(r);
  }
  return out;
}

function linearRanges(s: { wOff: number; bOff: number; K: number; N: number }): [number, number][] {
  return [
    [s.wOff, s.K * s.N],
    [s.bOff, s.N],
  ];
}

/** [first, end) of the parameters a dispatch's ranges cover. */
function span(ranges: [number, number][]): [number, number] {
  return [Math.min(...ranges.map(([o]) => o)), Math.max(...ranges.map(([o, n]) => o + n))];
}

/**
 * Cut the flat parameters into chunks that each fit one binding, never separating the ranges one dispatch reads:
 * the dispatches' spans are merged where they overlap and packed in order.
 */
export function chunkParams(plan: UNetPlan, maxFloats: number): [number, number][] {
  const spans = dispatchRanges(plan)
    .map(span)
    .sort((a, b) => a[0] - b[0]);
  const blocks: [number, number][] = [];
  for (const [a, b] of spans) {
    const last = blocks[blocks.length - 1];
    if (last && a < last[1]) last[1] = Math.max(last[1], b);
    else blocks.push([a, b]);
  }
  const chunks: [number, number][] = [];
  for (const [a, b] of blocks) {
    if (b - a > maxFloats) {
      throw new Error(
        `one layer's parameters take ${fmtBytes((b - a) * 4)}, more than one storage binding of this device holds (${fmtBytes(maxFloats * 4)})`,
      );
    }
    const last = chunks[chunks.length - 1];
    if (last && b - last[0] <= maxFloats) last[1] = b;
    else chunks.push([a, b]);
  }
  return chunks;
}

/**
 * A model's parameters on the device, uploaded once and shared by every U-Net built with them (UNetBuildOptions.params):
 * the flat layout and its split into bindings depend on the model's config only, not on the batch or image size, so an
 * upscaler that meets several image sizes uploads its weights once.
 */
export interface UNetParams {
  readonly config: UNetConfig;
  readonly whole: GPUBuffer | null;
  readonly chunks: ParamChunk[];
  readonly bytes: number;
  destroy(): void;
}

/** Upload a model's parameters once (see UNetParams); `maxBindingBytes` as in UNetBuildOptions.maxParamBindingBytes. */
export function uploadUNetParams(
  ctx: GpuContext,
  weights: UNetWeights,
  opts: { maxBindingBytes?: number; label?: string } = {},
): UNetParams {
  // the smallest input the model takes: its parameter layout is the same at every size
  const f = 2 ** (weights.config.channel_mults.length - 1);
  const plan = planUNet(weights.config, 1, f, f, true);
  const flat = packParams(plan, (n) => weights.param(n));
  const { whole, chunks } = uploadParams(ctx, plan, flat, opts.label ?? 'unet', {
    split: true,
    maxBindingBytes: opts.maxBindingBytes,
  });
  return {
    config: weights.config,
    whole,
    chunks,
    bytes: flat.byteLength,
    destroy: () => {
      for (const c of chunks) c.buf.destroy();
    },
  };
}

function uploadParams(
  ctx: GpuContext,
  plan: UNetPlan,
  params: Float32Array,
  label: string,
  opts: ParamBindingOptions,
): { whole: GPUBuffer | null; chunks: ParamChunk[] } {
  const maxBytes = Math.min(opts.maxBindingBytes ?? Infinity, ctx.limits.maxStorageBufferBindingSize);
  let whole: GPUBuffer | null = null;
  let chunks: ParamChunk[];
  if (params.byteLength <= maxBytes) {
    whole = ctx.upload(params, `${label}.params`);
    chunks = [{ start: 0, end: params.length, buf: whole }];
  } else if (opts.split) {
    chunks = chunkParams(plan, Math.floor(maxBytes / 4)).map(([start, end], i) => ({
      start,
      end,
      buf: ctx.upload(params.subarray(start, end), `${label}.params.${i}`),
    }));
  } else {
    throw new Error(
      `this model's parameters take ${fmtBytes(params.byteLength)}, more than one storage binding of this device can hold ` +
        `(maxStorageBufferBindingSize ${fmtBytes(ctx.limits.maxStorageBufferBindingSize)}), and training needs them in one: ` +
        'train on a GPU adapter (they allow 2 GiB and more), or a smaller model',
    );
  }
  return { whole, chunks };
}

/** `shared`: parameters already uploaded (uploadUNetParams); the returned buffers then do not include them. */
export function allocPlanBuffers(
  ctx: GpuContext,
  plan: UNetPlan,
  params: Float32Array | UNetParams,
  label: string,
  opts: ParamBindingOptions = {},
): PlanBuffers {
  const { B } = plan;
  const inner = plan.mlp.inner;
  const { whole, chunks } = params instanceof Float32Array ? uploadParams(ctx, plan, params, label, opts) : params;
  return {
    params: whole,
    chunks,
    level: ctx.buffer(B * 4, `${label}.noise_level`),
    enc: ctx.buffer(B * inner * 4, `${label}.noise_enc`),
    hidden: ctx.buffer(B * 4 * inner * 4, `${label}.noise_hidden`),
    t: ctx.buffer(B * inner * 4, `${label}.noise_emb`),
    emb: ctx.buffer(Math.max(plan.embTotal, 1) * 4, `${label}.block_emb`),
    stats: ctx.buffer(Math.max(plan.statsTotal, 1) * 4, `${label}.gn_stats`),
  };
}

/** The chunk holding every range a dispatch reads, and the offset to subtract from its parameter offsets. */
export function paramView(pb: PlanBuffers, ranges: [number, number][]): { buf: GPUBuffer; base: number } {
  const [lo, hi] = span(ranges);
  const c = pb.chunks.find((c) => c.start <= lo && hi <= c.end);
  if (!c) throw new Error(`internal: parameters [${lo}, ${hi}) are not in one chunk`);
  return { buf: c.buf, base: c.start };
}

/** The noise-level MLP and every block's projection into the embedding buffer. */
export async function recordEmbedding(ctx: GpuContext, plan: UNetPlan, pb: PlanBuffers): Promise<Dispatch[]> {
  const { B } = plan;
  const { inner, w1Off, b1Off, w2Off, b2Off, act } = plan.mlp;
  const lin = async (spec: Parameters<typeof linear>[1], inp: GPUBuffer, out: GPUBuffer) => {
    const v = paramView(pb, linearRanges(spec));
    return linear(ctx, { ...spec, wOff: spec.wOff - v.base, bOff: spec.bOff - v.base }, { params: v.buf, inp, out });
  };
  const d: Dispatch[] = [
    await positionalEncoding(ctx, { B, dim: inner, label: 'noise_level_mlp.0' }, { level: pb.level, out: pb.enc }),
    await lin({ B, K: inner, N: 4 * inner, wOff: w1Off, bOff: b1Off, label: 'noise_level_mlp.1' }, pb.enc, pb.hidden),
    await lin(
      { B, K: 4 * inner, N: inner, wOff: w2Off, bOff: b2Off, actIn: true, act, label: 'noise_level_mlp.3' },
      pb.hidden,
      pb.t,
    ),
  ];
  for (const e of plan.embBlocks) {
    d.push(
      await lin(
        { B, K: inner, N: e.dimOut, wOff: e.wOff, bOff: e.bOff, outOff: e.embOff, label: `${e.name}.noise_func` },
        pb.t,
        pb.emb,
      ),
    );
  }
  return d;
}

/**
 * One op of the plan as dispatches, given a buffer for every tensor: its family's recorder (engine/ops/plan-ops.ts).
 * With `xn` (a scratch of normScratchBytes), a conv's GroupNorm(+Swish) is written out once by its own kernel and the
 * conv reads the result (engine/ops/conv2d.ts recordConv).
 */
export function recordOp(
  ctx: GpuContext,
  op: PlanOp,
  pb: PlanBuffers,
  buf: (t: PTensor) => GPUBuffer,
  xn?: GPUBuffer,
): Promise<Dispatch[]> {
  return planOpFamily(op).forward(ctx, op, {
    buf,
    params: (ranges) => paramView(pb, ranges),
    stats: pb.stats,
    emb: pb.emb,
    xn,
  });
}

/** Bytes of the scratch recordOp needs to materialise the plan's normalisations (0 when none). */
export function normScratchBytes(plan: UNetPlan): number {
  let n = 0;
  for (const op of plan.ops)
    if (op.kind === 'conv' && op.spec.norm)
      n = Math.max(n, op.spec.B * (op.spec.C1 + op.spec.C2) * op.spec.Hin * op.spec.Win * 4);
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
  /** The parameter buffers as bound: one, or several when the model exceeds one storage binding. */
  paramChunks: { start: number; end: number }[] = [];
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
    if (opts.params && opts.params.config !== weights.config)
      throw new Error('UNet.build: the shared parameters were uploaded for another model');
    const params = opts.params ?? packParams(plan, (n) => weights.param(n));
    const pb = allocPlanBuffers(ctx, plan, params, opts.label ?? 'unet', {
      split: true,
      maxBindingBytes: opts.maxParamBindingBytes,
    });
    const net = new UNet(ctx, weights.config, B, H, W, plan, pb);
    // shared parameters belong to whoever uploaded them
    const own = planBufferList(pb);
    net.owned.push(...(opts.params ? own.filter((b) => !pb.chunks.some((c) => c.buf === b)) : own));
    net.memory.params = params instanceof Float32Array ? params.byteLength : params.bytes;
    net.paramChunks = pb.chunks.map(({ start, end }) => ({ start, end }));
    await net.compile(
      pb,
      !!opts.keepActivations,
      opts.label ?? 'unet',
      opts.materializeNorm ?? materializeNorm(ctx.options),
    );
    return net;
  }

  private async compile(pb: PlanBuffers, keep: boolean, label: string, materialize: boolean): Promise<void> {
    const ctx = this.ctx;
    const plan = this.plan;
    // the memory plan (planMemory): one buffer per slot, shared by the tensors whose lifetimes do not overlap
    const mem = planMemory(plan, keep);
    // (made in the plan's order and named after their first tensor)
    const slots: GPUBuffer[] = [];
    const bufs = new Map<PTensor, GPUBuffer>();
    for (const [t, i] of mem.of) {
      slots[i] ??= this.own(ctx.buffer(mem.buffers[i], `${label}.${t.name}`));
      bufs.set(t, slots[i]);
    }
    this.memory.activations += slots.reduce((a, b) => a + b.size, 0);
    this.memory.unshared += mem.unshared;

    const xn =
      materialize && normScratchBytes(plan)
        ? this.own(ctx.buffer(normScratchBytes(plan), `${label}.norm_scratch`))
        : undefined;
    if (xn) this.memory.activations += xn.size;
    // every op recorded at once: their pipelines are created concurrently (GpuContext.pipeline), in order in the list
    const recorded = await Promise.all([
      recordEmbedding(ctx, plan, pb),
      ...plan.ops.map((op) => recordOp(ctx, op, pb, (t) => bufs.get(t)!, xn)),
    ]);
    for (const d of recorded) this.dispatches.push(...d);
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
    if (!this.input)
      throw new Error('this U-Net was built with a split input (cond, y): write those buffers and call run()');
    if (xIn.length !== n) {
      throw new Error(
        `x_in has ${xIn.length} values; this U-Net was built for [${B}, ${in_channel}, ${this.height}, ${this.width}] = ${n}`,
      );
    }
    if (noiseLevel.length !== B)
      throw new Error(`noise_level has ${noiseLevel.length} values; expected one per batch element (${B})`);
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
