// The SR3 U-Net (the reference's model/sr3_modules/unet.py) as a recorded list of WGSL dispatches.
// Built once per (model, batch, height, width): pipelines, bind groups, uniforms and buffers are created up front,
// activation buffers are shared between tensors whose lifetimes do not overlap, and a forward pass is a replay.
import type { UNetConfig } from '../weights-format/config.ts';
import { expectedParamShapes } from '../weights-format/unet.ts';
import { encodeDispatch, fmtBytes, type Dispatch, type GpuContext } from './gpu.ts';
import * as K from './kernels.ts';

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
  label?: string;
}

interface Tensor {
  name: string;
  shape: [number, number, number, number];
  bytes: number;
  buf?: GPUBuffer;
  keep?: boolean;
}

interface Op {
  label: string;
  inputs: Tensor[];
  output: Tensor;
  make: () => Promise<Dispatch>;
}

export class UNet {
  readonly dispatches: Dispatch[] = [];
  /** Input [B, in_channel, H, W] (null with splitInput) and noise level [B] (the network is conditioned on sqrt(gamma)). */
  readonly input: GPUBuffer | null;
  readonly noiseLevel: GPUBuffer;
  /** With splitInput: the condition [B, in_channel - out_channel, H, W] and the noisy image [B, out_channel, H, W]. */
  readonly cond: GPUBuffer | null = null;
  readonly y: GPUBuffer | null = null;
  /** Output eps [B, out_channel, H, W]. */
  readonly output: GPUBuffer;
  readonly activations = new Map<string, { buf: GPUBuffer; shape: number[] }>();
  /** Bytes of activation buffers after reuse, and what they would take without it. */
  readonly memory = { activations: 0, unshared: 0, params: 0 };
  private owned: GPUBuffer[] = [];

  private constructor(
    readonly ctx: GpuContext,
    readonly config: UNetConfig,
    readonly batch: number,
    readonly height: number,
    readonly width: number,
  ) {
    this.input = undefined as unknown as GPUBuffer;
    this.noiseLevel = undefined as unknown as GPUBuffer;
    this.output = undefined as unknown as GPUBuffer;
  }

  /** Check that a model can run on a B x H x W input; throws a message that says what to change. */
  static checkShape(cfg: UNetConfig, batch: number, height: number, width: number): void {
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

  static async build(ctx: GpuContext, weights: UNetWeights, opts: UNetBuildOptions): Promise<UNet> {
    const cfg = weights.config;
    const { batch: B, height: H, width: W } = opts;
    UNet.checkShape(cfg, B, H, W);
    const net = new UNet(ctx, cfg, B, H, W);
    await net.compile(weights, opts);
    return net;
  }

  private async compile(weights: UNetWeights, opts: UNetBuildOptions): Promise<void> {
    const ctx = this.ctx;
    const cfg = this.config;
    const B = this.batch;
    const G = cfg.norm_groups;
    const inner = cfg.inner_channel;
    const keep = !!opts.keepActivations;

    // --- parameters: one flat buffer, in the reference's order
    const shapes = expectedParamShapes(cfg);
    const offs = new Map<string, number>();
    let total = 0;
    for (const [name, shape] of shapes) {
      offs.set(name, total);
      total += shape.reduce((a, b) => a * b, 1);
    }
    const flat = new Float32Array(total);
    for (const [name, shape] of shapes) {
      const v = weights.param(name);
      const n = shape.reduce((a, b) => a * b, 1);
      if (v.length !== n) throw new Error(`parameter ${name}: ${v.length} values, expected ${n} for shape [${shape}]`);
      flat.set(v, offs.get(name)!);
    }
    const params = this.own(ctx.upload(flat, 'unet.params'));
    this.memory.params = flat.byteLength;
    const off = (name: string): number => {
      const o = offs.get(name);
      if (o === undefined) throw new Error(`model has no parameter ${name}`);
      return o;
    };

    // --- fixed buffers
    const fixed = (name: string, C: number): Tensor => {
      const tt: Tensor = { name, shape: [B, C, this.height, this.width], bytes: B * C * this.height * this.width * 4, keep: true };
      tt.buf = this.own(ctx.buffer(tt.bytes, `unet.${name}`));
      return tt;
    };
    let inputA: Tensor;
    let inputB: Tensor | null = null;
    if (opts.splitInput) {
      const condC = cfg.in_channel - cfg.out_channel;
      if (condC < 1) {
        throw new Error(`this model takes ${cfg.in_channel} input channels for ${cfg.out_channel} output channels: it has no room for a condition image`);
      }
      inputA = fixed('cond', condC);
      inputB = fixed('y', cfg.out_channel);
      (this as { cond: GPUBuffer }).cond = inputA.buf!;
      (this as { y: GPUBuffer }).y = inputB.buf!;
      (this as { input: GPUBuffer | null }).input = null;
    } else {
      inputA = fixed('x_in', cfg.in_channel);
      (this as { input: GPUBuffer }).input = inputA.buf!;
    }
    (this as { noiseLevel: GPUBuffer }).noiseLevel = this.own(ctx.buffer(B * 4, 'unet.noise_level'));

    // Noise-level MLP and every block's projection, computed up front into one embedding buffer.
    const resBlocks: { name: string; dimOut: number; embOff: number }[] = [];
    let embTotal = 0;
    const addBlock = (name: string, dimOut: number) => {
      resBlocks.push({ name, dimOut, embOff: embTotal });
      embTotal += B * dimOut;
      return embTotal - B * dimOut;
    };
    // GroupNorm statistics: one slot per GroupNorm in one buffer.
    let statsTotal = 0;
    const statsSlot = () => {
      statsTotal += B * G * 2;
      return statsTotal - B * G * 2;
    };

    const ops: Op[] = [];
    const t = (name: string, C: number, h: number, w: number): Tensor => ({
      name,
      shape: [B, C, h, w],
      bytes: B * C * h * w * 4,
    });
    const deferred: (() => void)[] = [];
    let embBuf: GPUBuffer;
    let statsBuf: GPUBuffer;
    const stats = () => statsBuf;
    const emb = () => embBuf;

    const conv = (
      label: string,
      a: Tensor,
      b: Tensor | null,
      Cout: number,
      o: { ks: 1 | 3; stride?: 1 | 2; upsample?: boolean; norm?: 0 | 1 | 2; normPrefix?: string; statsOff?: number; w: string; bias: string | null; embOff?: number; res?: Tensor | null },
    ): Tensor => {
      const [, C1, h, w] = a.shape;
      const C2 = b ? b.shape[1] : 0;
      const [Ho, Wo] = K.convOutSize({ Hin: h, Win: w, ks: o.ks, stride: o.stride ?? 1, upsample: o.upsample });
      const out = t(label, Cout, Ho, Wo);
      const inputs = [a, ...(b ? [b] : []), ...(o.res ? [o.res] : [])];
      ops.push({
        label,
        inputs,
        output: out,
        make: () =>
          K.conv2d(
            ctx,
            {
              B, C1, C2, Hin: h, Win: w, Cout, ks: o.ks, stride: o.stride ?? 1, upsample: o.upsample,
              norm: o.norm ?? 0, groups: G, statsOff: o.statsOff,
              gammaOff: o.normPrefix ? off(`${o.normPrefix}.weight`) : 0,
              betaOff: o.normPrefix ? off(`${o.normPrefix}.bias`) : 0,
              wOff: off(o.w), bOff: o.bias ? off(o.bias) : -1, embOff: o.embOff, hasRes: !!o.res, label,
            },
            {
              params, a: a.buf!, b: b?.buf, stats: o.norm ? stats() : undefined,
              emb: o.embOff !== undefined ? emb() : undefined, res: o.res?.buf, out: out.buf!,
            },
          ),
      });
      return out;
    };
    const gnStats = (label: string, a: Tensor, b: Tensor | null): number => {
      const slot = statsSlot();
      const [, C1, h, w] = a.shape;
      const C2 = b ? b.shape[1] : 0;
      // A stats op has no tensor output; it reads a and b (keeping them alive until here, which they are anyway).
      const marker: Tensor = { name: `${label}.stats`, shape: [0, 0, 0, 0], bytes: 0 };
      ops.push({
        label,
        inputs: b ? [a, b] : [a],
        output: marker,
        make: () => K.groupNormStats(ctx, { B, C1, C2, HW: h * w, groups: G, statsOff: slot, label }, { a: a.buf!, b: b?.buf, stats: stats() }),
      });
      return slot;
    };

    const resBlock = (name: string, x: Tensor, skip: Tensor | null, dimOut: number, withAttn: boolean): Tensor => {
      const p = `${name}.res_block`;
      const embOff = addBlock(p, dimOut);
      const s1 = gnStats(`${p}.block1.norm`, x, skip);
      const h = conv(`${p}.block1`, x, skip, dimOut, {
        ks: 3, norm: 2, normPrefix: `${p}.block1.block.0`, statsOff: s1, w: `${p}.block1.block.3.weight`, bias: `${p}.block1.block.3.bias`, embOff,
      });
      const dimIn = x.shape[1] + (skip ? skip.shape[1] : 0);
      const r = dimIn !== dimOut
        ? conv(`${p}.res_conv`, x, skip, dimOut, { ks: 1, w: `${p}.res_conv.weight`, bias: `${p}.res_conv.bias` })
        : x;
      const s2 = gnStats(`${p}.block2.norm`, h, null);
      let y = conv(`${p}.block2`, h, null, dimOut, {
        ks: 3, norm: 2, normPrefix: `${p}.block2.block.0`, statsOff: s2, w: `${p}.block2.block.3.weight`, bias: `${p}.block2.block.3.bias`, res: r,
      });
      if (withAttn) {
        const a = `${name}.attn`;
        const s3 = gnStats(`${a}.norm`, y, null);
        const qkv = conv(`${a}.qkv`, y, null, 3 * dimOut, { ks: 1, norm: 1, normPrefix: `${a}.norm`, statsOff: s3, w: `${a}.qkv.weight`, bias: null });
        const core = t(`${a}.core`, dimOut, y.shape[2], y.shape[3]);
        ops.push({
          label: `${a}.core`,
          inputs: [qkv],
          output: core,
          make: () => K.attention(ctx, { B, C: dimOut, HW: y.shape[2] * y.shape[3], label: `${a}.core` }, { qkv: qkv.buf!, out: core.buf! }),
        });
        y = conv(`${a}.out`, core, null, dimOut, { ks: 1, w: `${a}.out.weight`, bias: `${a}.out.bias`, res: y });
      }
      return y;
    };

    const acts: [string, Tensor][] = [];
    // --- the network, layer by layer as unet.py builds it
    let x = conv('downs.0', inputA, inputB, inner, { ks: 3, w: 'downs.0.weight', bias: 'downs.0.bias' });
    acts.push(['act.downs.0', x]);
    const feats: Tensor[] = [x];
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
        x = conv(`downs.${idx}`, x, null, x.shape[1], { ks: 3, stride: 2, w: `downs.${idx}.conv.weight`, bias: `downs.${idx}.conv.bias` });
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
        x = conv(`ups.${idx}`, x, null, x.shape[1], { ks: 3, upsample: true, w: `ups.${idx}.conv.weight`, bias: `ups.${idx}.conv.bias` });
        acts.push([`act.ups.${idx}`, x]);
        idx++;
      }
    }
    const sf = gnStats('final_conv.norm', x, null);
    const out = conv('final_conv', x, null, cfg.out_channel, {
      ks: 3, norm: 2, normPrefix: 'final_conv.block.0', statsOff: sf, w: 'final_conv.block.3.weight', bias: 'final_conv.block.3.bias',
    });
    out.keep = true;
    if (keep) for (const [, a] of acts) a.keep = true;

    // --- small fixed buffers: noise MLP scratch, embeddings, GroupNorm stats
    const encBuf = this.own(ctx.buffer(B * inner * 4, 'unet.noise_enc'));
    const h1Buf = this.own(ctx.buffer(B * 4 * inner * 4, 'unet.noise_hidden'));
    const tBuf = this.own(ctx.buffer(B * inner * 4, 'unet.noise_emb'));
    embBuf = this.own(ctx.buffer(Math.max(embTotal, 1) * 4, 'unet.block_emb'));
    statsBuf = this.own(ctx.buffer(Math.max(statsTotal, 1) * 4, 'unet.gn_stats'));
    void deferred;

    // --- memory plan: a tensor's buffer returns to the pool after its last reader
    const lastUse = new Map<Tensor, number>();
    ops.forEach((op, i) => op.inputs.forEach((tt) => lastUse.set(tt, i)));
    const pool: GPUBuffer[] = [];
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i];
      const o = op.output;
      this.memory.unshared += o.bytes;
      if (o.bytes > 0) {
        if (o.keep) {
          o.buf = this.own(ctx.buffer(o.bytes, o.name));
          this.memory.activations += o.buf.size;
        } else {
          // best fit among free buffers, else a new one
          let best = -1;
          for (let j = 0; j < pool.length; j++) {
            if (pool[j].size >= o.bytes && (best < 0 || pool[j].size < pool[best].size)) best = j;
          }
          if (best >= 0) o.buf = pool.splice(best, 1)[0];
          else {
            o.buf = this.own(ctx.buffer(o.bytes, `unet.act${this.owned.length}`));
            this.memory.activations += o.buf.size;
          }
        }
      }
      for (const inp of new Set(op.inputs)) {
        if (lastUse.get(inp) === i && !inp.keep && inp.buf) pool.push(inp.buf);
      }
    }

    // --- record the dispatches
    const d = this.dispatches;
    d.push(await K.positionalEncoding(ctx, { B, dim: inner, label: 'noise_level_mlp.0' }, { level: this.noiseLevel, out: encBuf }));
    d.push(await K.linear(ctx, { B, K: inner, N: 4 * inner, wOff: off('noise_level_mlp.1.weight'), bOff: off('noise_level_mlp.1.bias'), label: 'noise_level_mlp.1' }, { params, inp: encBuf, out: h1Buf }));
    d.push(await K.linear(ctx, { B, K: 4 * inner, N: inner, wOff: off('noise_level_mlp.3.weight'), bOff: off('noise_level_mlp.3.bias'), swishIn: true, label: 'noise_level_mlp.3' }, { params, inp: h1Buf, out: tBuf }));
    for (const rb of resBlocks) {
      d.push(
        await K.linear(
          ctx,
          { B, K: inner, N: rb.dimOut, wOff: off(`${rb.name}.noise_func.noise_func.0.weight`), bOff: off(`${rb.name}.noise_func.noise_func.0.bias`), outOff: rb.embOff, label: `${rb.name}.noise_func` },
          { params, inp: tBuf, out: embBuf },
        ),
      );
    }
    for (const op of ops) d.push(await op.make());
    (this as { output: GPUBuffer }).output = out.buf!;
    if (keep) {
      this.activations.set('act.noise_emb', { buf: tBuf, shape: [B, 1, inner] });
      for (const [name, a] of acts) this.activations.set(name, { buf: a.buf!, shape: a.shape });
    }
    this.memory.activations += encBuf.size + h1Buf.size + tBuf.size + embBuf.size + statsBuf.size;
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
    if (xIn.length !== n) {
      throw new Error(`x_in has ${xIn.length} values; this U-Net was built for [${B}, ${in_channel}, ${this.height}, ${this.width}] = ${n}`);
    }
    if (noiseLevel.length !== B) throw new Error(`noise_level has ${noiseLevel.length} values; expected one per batch element (${B})`);
    if (!this.input) throw new Error('this U-Net was built with a split input (cond, y): write those buffers and call run()');
    this.ctx.write(this.input, xIn);
    this.ctx.write(this.noiseLevel, noiseLevel);
    this.run();
    return this.ctx.read(this.output, B * out_channel * this.height * this.width * 4);
  }

  /** Submit one forward pass over what is already in `input` and `noiseLevel`. */
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
