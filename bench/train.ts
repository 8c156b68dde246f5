// Training-step benchmark: engine/trainer.ts's Trainer as `sr3 train` runs it, on synthetic photos and random
// weights. A step is Trainer.step(): the batch's inputs written, one submission of condition (antialiased bicubic
// downscale and bicubic upscale on the GPU) + noise + residual target + forward + L1 loss (sum) + every op's backward
// + gradient clipping + Adam + EMA, the next batch's crops drawn on the CPU while the GPU runs, and the loss read
// back; timed by the wall clock (the graph encodes its own compute pass, so there is no timestamp pair around it).
import type { GpuContext } from '../engine/gpu.ts';
import type { PixelImage } from '../engine/image.ts';
import * as K from '../engine/kernels.ts';
import { parseSchedule } from '../engine/schedule.ts';
import { mulberry32, photoCrops, Trainer, type TrainerOptions } from '../engine/trainer.ts';
import type { UNetConfig } from '../weights-format/config.ts';
import { median } from './timing.ts';
import { randomWeights } from './unet.ts';

export interface TrainCase {
  kind: 'train';
  name: string;
  /** the config's label (e.g. '16->128') */
  model: string;
  config: UNetConfig;
  batch: number;
  /** the square HR patch */
  size: number;
}

/**
 * The recipe timed: bench/device-train.sh's (residual target, EMA 0.999, warm-up, scale 4, L1 with sum reduction)
 * plus gradient clipping, so every per-step pass `sr3 train` can run is in the figure except the blur augmentation
 * (off by default, one small dispatch on the LR image).
 */
export const BENCH_RECIPE = {
  scale: 4,
  lr: 1e-4,
  warmup: 100,
  loss: 'l1',
  reduction: 'sum',
  objective: 'diffusion',
  target: 'residual',
  ema: 0.999,
  clip: 1,
} satisfies Partial<TrainerOptions>;

export interface TrainResult {
  name: string;
  model: string;
  batch: number;
  size: number;
  /** median wall ms of one Trainer.step() (condition, forward, loss, backward, clip, Adam, EMA, next crops, loss read) */
  ms_per_step: number;
  ms_min: number;
  ms_per_image: number;
  images_per_s: number;
  steps: number;
  params: number;
  /** parameters, gradients, Adam's two moments and the EMA */
  params_bytes: number;
  /** every storage buffer Trainer.create allocated (no reuse in the training graph) plus the split-K scratch */
  peak_bytes: number;
  /** Trainer.create plus the first step (where lavapipe compiles the pipelines) */
  build_ms: number;
  /** the loss of the last timed step (a sanity check: finite) */
  loss: number;
}

/** Synthetic 8-bit RGB photos a little larger than the patch, so the crops move and turn as real ones do. */
function photos(size: number, count: number): PixelImage[] {
  const rnd = mulberry32(1);
  const w = size + 16;
  return Array.from({ length: count }, () => {
    const data = new Uint8Array(w * w * 3);
    for (let i = 0; i < data.length; i++) data[i] = Math.floor(rnd() * 256);
    return { width: w, height: w, channels: 3 as const, bitDepth: 8 as const, data };
  });
}

/** ms per training step, `reps` timed steps after one untimed (compiling) step. */
export async function benchTrain(ctx: GpuContext, c: TrainCase, reps: number): Promise<TrainResult> {
  const weights = randomWeights(c.config);
  const t0 = performance.now();
  // count the buffers the trainer allocates (the split-K scratch is shared by the context: added below)
  let allocated = 0;
  const alloc = ctx.buffer;
  ctx.buffer = (bytes, label, extra) => {
    const b = alloc.call(ctx, bytes, label, extra);
    if (label !== 'conv2d.splitk_partials') allocated += b.size;
    return b;
  };
  let trainer: Trainer;
  try {
    trainer = await Trainer.create(ctx, weights, {
      ...BENCH_RECIPE,
      batch: c.batch,
      patch: c.size,
      schedule: parseSchedule('linear:2000:1e-6:0.01'),
      crops: photoCrops(photos(c.size, 4), c.size),
    });
  } finally {
    Reflect.deleteProperty(ctx, 'buffer'); // back to GpuContext.prototype.buffer
  }
  try {
    await trainer.step(); // compiles every pipeline on lavapipe
    const buildMs = performance.now() - t0;
    const times: number[] = [];
    let loss = NaN;
    for (let r = 0; r < Math.max(1, reps); r++) {
      const t1 = performance.now();
      loss = (await trainer.step()).loss;
      times.push(performance.now() - t1);
    }
    if (!Number.isFinite(loss)) throw new Error(`the loss is ${loss} after ${trainer.stepsDone} steps`);
    const ms = median(times);
    const nParams = trainer.graph.nParams;
    return {
      name: c.name,
      model: c.model,
      batch: c.batch,
      size: c.size,
      ms_per_step: ms,
      ms_min: Math.min(...times),
      ms_per_image: ms / c.batch,
      images_per_s: c.batch / (ms / 1e3),
      steps: times.length,
      params: nParams,
      params_bytes: 5 * 4 * nParams,
      peak_bytes: allocated + K.scratchBytes(ctx),
      build_ms: buildMs,
      loss,
    };
  } finally {
    trainer.destroy();
  }
}
