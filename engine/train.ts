// Training on the GPU without autograd: the U-Net plan's forward, the loss, and every op's hand-written backward in
// reverse order, recorded once and replayed each step, then Adam over the flat parameter buffer.
import type { Dispatch, GpuContext } from './gpu.ts';
import { encodeDispatch } from './gpu.ts';
import { noisify } from './ops/diffusion.ts';
import { linearBackward } from './ops/linear.ts';
import { loss, reducePartials } from './ops/loss.ts';
import { planOpFamily, type BackwardEnv } from './ops/plan-ops.ts';
import { residual } from './ops/train-data.ts';
import { adam, type AdamDispatch, type AdamOptions } from './optim.ts';
import {
  allocPlanBuffers,
  planBufferList,
  recordEmbedding,
  recordOp,
  type PlanBuffers,
  type UNetWeights,
} from './unet.ts';
import { packParams, planUNet, type PTensor, type UNetPlan } from './unet-plan.ts';

/** What the network's y stands for: the HR image (the reference's) or HR minus the bicubic condition (SRDiff's). */
export type TrainTarget = 'hr' | 'residual';

export interface TrainGraphOptions {
  batch: number;
  height: number;
  width: number;
  loss?: 'l1' | 'l2';
  /** 'sum' as the reference trains, or 'mean'. */
  reduction?: 'sum' | 'mean';
  adam?: AdamOptions;
  /**
   * 'diffusion' (Algorithm 1: predict the noise of y_noisy) or 'regression' (the paper's baseline: predict y0 from the
   * condition alone in one pass; y and the noise level stay 0, the target is hr).
   */
  objective?: 'diffusion' | 'regression';
  /**
   * 'hr' (the reference: y0 is the HR image) or 'residual' (y0 = HR - condition, made on the GPU each step after the
   * prelude has written the condition); the sampler then adds the condition back (engine/upscale.ts).
   */
  target?: TrainTarget;
}

export class TrainGraph {
  readonly plan: UNetPlan;
  /** Batch inputs: the HR target y0, the condition (upscaled LR), sqrt(gamma) [B] and the noise. */
  readonly hr: GPUBuffer;
  readonly cond: GPUBuffer;
  readonly sqrtGamma: GPUBuffer;
  readonly noise: GPUBuffer;
  /** y0, what is noised and learnt: hr itself, or HR - condition with the residual target. */
  y0: GPUBuffer;
  /** Flat parameters, their gradients, Adam's moments; the loss value [1]. */
  readonly params: GPUBuffer;
  readonly grads: GPUBuffer;
  readonly lossValue: GPUBuffer;
  readonly nParams: number;
  /** Adam's first and second moments (null without an optimizer). */
  adamM: GPUBuffer | null = null;
  adamV: GPUBuffer | null = null;
  /** Dispatches run before each step's forward (e.g. making the condition from the HR batch on the GPU). */
  prelude: Dispatch[] = [];
  /** Dispatches run between the backward pass and the update (e.g. gradient-norm clipping). */
  preUpdate: Dispatch[] = [];
  /** Dispatches run after each update (e.g. the EMA of the weights). */
  postlude: Dispatch[] = [];
  private forwardLoss: Dispatch[] = [];
  private backward: Dispatch[] = [];
  private zero: GPUBuffer[] = [];
  private adamStep: AdamDispatch | null = null;
  private owned: GPUBuffer[] = [];
  private step = 0;

  private constructor(
    readonly ctx: GpuContext,
    plan: UNetPlan,
    private readonly pb: PlanBuffers,
    private readonly bufs: Map<PTensor, GPUBuffer>,
  ) {
    this.plan = plan;
    if (!pb.params) throw new Error('internal: training needs the parameters in one buffer'); // allocPlanBuffers refuses otherwise
    this.params = pb.params;
    this.nParams = plan.params.total;
    const n = plan.inputB!.bytes / 4;
    this.hr = this.own(ctx.buffer(n * 4, 'train.hr'));
    this.cond = bufs.get(plan.inputA)!;
    this.sqrtGamma = pb.level;
    this.noise = this.own(ctx.buffer(n * 4, 'train.noise'));
    this.y0 = this.hr;
    this.grads = this.own(ctx.buffer(plan.params.total * 4, 'train.grads'));
    this.lossValue = this.own(ctx.buffer(16, 'train.loss'));
  }

  static async build(ctx: GpuContext, weights: UNetWeights, o: TrainGraphOptions): Promise<TrainGraph> {
    const plan = planUNet(weights.config, o.batch, o.height, o.width, true);
    const pb = allocPlanBuffers(
      ctx,
      plan,
      packParams(plan, (n) => weights.param(n)),
      'train',
    );
    const bufs = new Map<PTensor, GPUBuffer>();
    for (const t of plan.tensors) bufs.set(t, ctx.buffer(t.bytes, `train.${t.name}`));
    const g = new TrainGraph(ctx, plan, pb, bufs);
    g.owned.push(...planBufferList(pb), ...bufs.values());
    await g.record(o);
    return g;
  }

  private own(b: GPUBuffer): GPUBuffer {
    this.owned.push(b);
    return b;
  }

  private async record(o: TrainGraphOptions): Promise<void> {
    const ctx = this.ctx;
    const plan = this.plan;
    const pb = this.pb;
    const { B } = plan;
    const buf = (t: PTensor) => this.bufs.get(t)!;
    const yT = plan.inputB!;
    const n = yT.bytes / 4;

    // ---- forward: y_noisy = sqrt(g) y0 + sqrt(1-g) eps, then the U-Net on cat(cond, y_noisy)
    const regression = o.objective === 'regression';
    const f: Dispatch[] = [];
    if (o.target === 'residual') {
      if (plan.inputA.bytes !== yT.bytes)
        throw new Error('the residual target needs a condition with as many channels as the output');
      this.y0 = this.own(ctx.buffer(n * 4, 'train.y0'));
      f.push(await residual(ctx, { n }, { a: this.hr, b: buf(plan.inputA), out: this.y0 }));
    }
    if (!regression)
      f.push(await noisify(ctx, { n, per: n / B }, { level: pb.level, y0: this.y0, noise: this.noise, y: buf(yT) }));
    f.push(...(await recordEmbedding(ctx, plan, pb)));
    for (const op of plan.ops) f.push(...(await recordOp(ctx, op, pb, buf)));

    // ---- loss against the noise: value and dLoss/dPred
    const grad = new Map<PTensor, GPUBuffer>();
    const gradOf = (t: PTensor) => {
      let g = grad.get(t);
      if (!g) {
        g = this.own(ctx.buffer(t.bytes, `train.d_${t.name}`));
        grad.set(t, g);
      }
      return g;
    };
    const partial = this.own(ctx.buffer(reducePartials(n) * 4, 'train.loss_partial'));
    f.push(
      ...(await loss(
        ctx,
        { n, kind: o.loss ?? 'l1', reduction: o.reduction ?? 'sum', label: 'loss' },
        {
          pred: buf(plan.output),
          target: regression ? this.y0 : this.noise,
          grad: gradOf(plan.output),
          partial,
          value: this.lossValue,
        },
      )),
    );
    this.forwardLoss = f;

    // ---- backward, op by op in reverse (each family's recorder, engine/ops/plan-ops.ts); activation gradients
    // accumulate into zeroed buffers. The scratch buffers are shared: one per name, of the largest size any op asks.
    const scratchNeed = new Map<string, number>();
    for (const op of plan.ops) {
      for (const [k, bytes] of Object.entries(planOpFamily(op).scratchBytes(op)))
        scratchNeed.set(k, Math.max(scratchNeed.get(k) ?? 16, bytes));
    }
    const scratch: Record<string, GPUBuffer> = {};
    for (const [k, bytes] of scratchNeed) scratch[k] = this.own(ctx.buffer(bytes, `train.scratch.${k}`));
    const dEmb = this.own(ctx.buffer(Math.max(plan.embTotal, 1) * 4, 'train.d_emb'));
    const dT = this.own(ctx.buffer(pb.t.size, 'train.d_t'));
    const dHidden = this.own(ctx.buffer(pb.hidden.size, 'train.d_hidden'));
    const env: BackwardEnv = {
      buf,
      grad: gradOf,
      isInput: (t) => t === plan.inputA || t === plan.inputB,
      params: this.params,
      grads: this.grads,
      stats: pb.stats,
      dEmb,
      scratch,
    };
    const bw: Dispatch[] = [];
    for (let i = plan.ops.length - 1; i >= 0; i--)
      bw.push(...(await planOpFamily(plan.ops[i]).backward(ctx, plan.ops[i], env)));
    // the embedding: every block's projection, then the noise-level MLP
    const { inner, w1Off, b1Off, w2Off, b2Off, act } = plan.mlp;
    for (const e of plan.embBlocks) {
      bw.push(
        ...(await linearBackward(
          ctx,
          { B, K: inner, N: e.dimOut, wOff: e.wOff, bOff: e.bOff, dOutOff: e.embOff, label: `${e.name}.noise_func` },
          { params: this.params, inp: pb.t, dOut: dEmb, grads: this.grads, dIn: dT },
          { accumulate: true },
        )),
      );
    }
    bw.push(
      ...(await linearBackward(
        ctx,
        { B, K: 4 * inner, N: inner, wOff: w2Off, bOff: b2Off, actIn: true, act, label: 'noise_level_mlp.3' },
        { params: this.params, inp: pb.hidden, dOut: dT, grads: this.grads, dIn: dHidden },
      )),
      ...(await linearBackward(
        ctx,
        { B, K: inner, N: 4 * inner, wOff: w1Off, bOff: b1Off, label: 'noise_level_mlp.1' },
        { params: this.params, inp: pb.enc, dOut: dHidden, grads: this.grads },
      )),
    );
    this.backward = bw;
    this.zero = [...[...grad.entries()].filter(([t]) => t !== plan.output).map(([, g]) => g), dT];

    if (o.adam) {
      const m = this.own(ctx.buffer(plan.params.total * 4, 'train.adam_m'));
      const v = this.own(ctx.buffer(plan.params.total * 4, 'train.adam_v'));
      this.adamM = m;
      this.adamV = v;
      this.adamStep = await adam(
        ctx,
        { n: plan.params.total, ...o.adam },
        { params: this.params, grads: this.grads, m, v },
      );
    }
  }

  /** Write one batch: HR ([-1, 1]; y0 is made from it), condition, sqrt(gamma) per element, noise. */
  setBatch(b: { hr: Float32Array; cond: Float32Array; sqrtGamma: Float32Array; noise: Float32Array }): void {
    const n = this.plan.inputB!.bytes / 4;
    const nc = this.plan.inputA.bytes / 4;
    if (b.hr.length !== n || b.noise.length !== n)
      throw new Error(`hr and noise need ${n} values, got ${b.hr.length} and ${b.noise.length}`);
    if (b.cond.length !== nc) throw new Error(`the condition needs ${nc} values, got ${b.cond.length}`);
    if (b.sqrtGamma.length !== this.plan.B)
      throw new Error(`sqrt_gamma needs ${this.plan.B} values, got ${b.sqrtGamma.length}`);
    this.ctx.write(this.hr, b.hr);
    this.ctx.write(this.cond, b.cond);
    this.ctx.write(this.sqrtGamma, b.sqrtGamma);
    this.ctx.write(this.noise, b.noise);
  }

  /** Encode forward, loss, backward (and an Adam update when `update`) for the batch in the buffers. */
  encode(enc: GPUCommandEncoder, update: boolean): void {
    for (const z of this.zero) enc.clearBuffer(z);
    const pass = enc.beginComputePass({ label: 'train.step' });
    for (const d of this.prelude) encodeDispatch(pass, d);
    for (const d of this.forwardLoss) encodeDispatch(pass, d);
    for (const d of this.backward) encodeDispatch(pass, d);
    if (update) {
      if (!this.adamStep) throw new Error('this graph was built without an optimizer (pass adam options)');
      for (const d of this.preUpdate) encodeDispatch(pass, d);
      encodeDispatch(pass, this.adamStep);
      for (const d of this.postlude) encodeDispatch(pass, d);
    }
    pass.end();
  }

  /** Gradients (and with `update`, one Adam step); returns the loss. */
  async run(update = false, lr?: number): Promise<number> {
    this.submit(update, lr);
    return (await this.ctx.read(this.lossValue, 4))[0];
  }

  get steps(): number {
    return this.step;
  }

  /** Continue from a saved optimizer step count (Adam's bias correction depends on it). */
  set steps(n: number) {
    if (!Number.isInteger(n) || n < 0) throw new Error(`step count must be a non-negative integer, got ${n}`);
    this.step = n;
  }

  /** Submit a step without reading the loss back (the caller reads lossValue when it wants). */
  submit(update: boolean, lr?: number): void {
    if (update) this.adamStep!.setStep(++this.step, lr);
    const enc = this.ctx.device.createCommandEncoder({ label: 'train' });
    this.encode(enc, update);
    this.ctx.device.queue.submit([enc.finish()]);
  }

  async readParams(): Promise<Float32Array> {
    return this.ctx.read(this.params, this.nParams * 4);
  }

  async readGrads(): Promise<Float32Array> {
    return this.ctx.read(this.grads, this.nParams * 4);
  }

  /** A named view of a flat array laid out like the parameters. */
  byName(flat: Float32Array): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>();
    for (const [name, shape] of this.plan.params.order) {
      const o = this.plan.params.offsets.get(name)!;
      out.set(name, flat.subarray(o, o + shape.reduce((a, b) => a * b, 1)));
    }
    return out;
  }

  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned = [];
  }
}
