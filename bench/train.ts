// Training-step benchmark: engine/train.ts's TrainGraph as `sr3 train` builds it (forward, L1 loss with sum
// reduction against the noise, every op's backward, Adam), on synthetic random data and random weights. A step is
// one submission of forward + loss + backward + Adam, timed by the wall clock to onSubmittedWorkDone (TrainGraph
// encodes its own compute pass, so there is no timestamp pair around it).
import type { GpuContext } from '../engine/gpu.ts';
import * as K from '../engine/kernels.ts';
import { TrainGraph } from '../engine/train.ts';
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

export interface TrainResult {
  name: string;
  model: string;
  batch: number;
  size: number;
  /** median wall ms of one step (forward + loss + backward + Adam) */
  ms_per_step: number;
  ms_min: number;
  ms_per_image: number;
  images_per_s: number;
  steps: number;
  params: number;
  /** parameters, gradients and Adam's two moments */
  params_bytes: number;
  /** every storage buffer TrainGraph.build allocated (no reuse in the training graph) plus the split-K scratch */
  peak_bytes: number;
  /** TrainGraph.build plus the first step (where lavapipe compiles the pipelines) */
  build_ms: number;
  /** the loss of the last timed step (a sanity check: finite) */
  loss: number;
}

/** Deterministic uniform values in [lo, hi). */
function uniform(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((s >>> 8) / 16777216) * (hi - lo);
  }
  return out;
}

/** ms per training step, `reps` timed steps after one untimed (compiling) step. */
export async function benchTrain(ctx: GpuContext, c: TrainCase, reps: number): Promise<TrainResult> {
  const weights = randomWeights(c.config);
  const t0 = performance.now();
  // count the buffers the graph allocates (the split-K scratch is shared by the context: added below)
  let allocated = 0;
  const alloc = ctx.buffer;
  ctx.buffer = (bytes, label, extra) => {
    const b = alloc.call(ctx, bytes, label, extra);
    if (label !== 'conv2d.splitk_partials') allocated += b.size;
    return b;
  };
  let tg: TrainGraph;
  try {
    tg = await TrainGraph.build(ctx, weights, {
      batch: c.batch,
      height: c.size,
      width: c.size,
      loss: 'l1',
      reduction: 'sum',
      adam: { lr: 1e-4 },
    });
  } finally {
    Reflect.deleteProperty(ctx, 'buffer'); // back to GpuContext.prototype.buffer
  }
  try {
    const n = c.batch * c.config.out_channel * c.size * c.size;
    const nc = c.batch * (c.config.in_channel - c.config.out_channel) * c.size * c.size;
    tg.setBatch({
      hr: uniform(n, 1),
      cond: uniform(nc, 2),
      sqrtGamma: uniform(c.batch, 3, 0.1, 0.99),
      noise: uniform(n, 4, -2, 2),
    });
    const step = async () => {
      tg.submit(true);
      await ctx.sync();
    };
    await step(); // compiles every pipeline on lavapipe
    const buildMs = performance.now() - t0;
    const times: number[] = [];
    for (let r = 0; r < Math.max(1, reps); r++) {
      const t1 = performance.now();
      await step();
      times.push(performance.now() - t1);
    }
    const loss = (await ctx.read(tg.lossValue, 4))[0];
    if (!Number.isFinite(loss)) throw new Error(`the loss is ${loss} after ${tg.steps} steps`);
    const ms = median(times);
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
      params: tg.nParams,
      params_bytes: 4 * 4 * tg.nParams,
      peak_bytes: allocated + K.scratchBytes(ctx),
      build_ms: buildMs,
      loss,
    };
  } finally {
    tg.destroy();
  }
}
