// `sr3 worker`: one process per GPU taking upscaling jobs from a Redis queue (BullMQ). It opens its device and model
// once, reports each job's progress (steps done / total) through the job, writes outputs atomically and returns the
// output path and timings. A job that fails for its input fails at once and is not retried (UnrecoverableError);
// anything else (device loss, a worker killed mid-job and found stalled by another) is tried again, by any worker.
import { readdir, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Job } from './queue-libs.ts';
import type { SamplerKind } from '../sampler.ts';
import { DEFAULT_SAMPLER, defaultSchedule } from '../upscale.ts';
import type { SR3Model } from '../../weights-format/index.ts';
import { createUpscaler } from './api.ts';
import { decodeImage, imageSize, readImageBytes, type Image } from './image-io.ts';
import { openModel } from './model.ts';
import { writePng } from './png.ts';
import {
  checkRedisUrl,
  connectRedis,
  DEFAULT_QUEUE,
  loadQueueLibs,
  MAX_INLINE_BYTES,
  workerName,
  type UpscaleJobData,
  type UpscaleJobProgress,
  type UpscaleJobResult,
} from './queue.ts';
import { DEFAULT_MODEL } from './upscale.ts';
import { checkOutputSize, inputLimits, jobSampling } from './upscale-args.ts';

const HELP = `usage: sr3 worker --redis URL [--queue NAME] [--concurrency 1] [--model f] [--config opts.json]

Takes upscaling jobs from a Redis queue (BullMQ) until stopped: run one per GPU, on as many machines as you like
(README "Many images, many machines"). Inputs and outputs are paths on storage every worker sees.
  --redis URL            the Redis server holding the queue, e.g. redis://10.0.0.5:6379
  --queue NAME           queue name (default ${DEFAULT_QUEUE})
  --concurrency N        jobs in flight on this device at once (default 1)
  --model f              model file or reference checkpoint (default: the bundled 4x model); --config for a .pth
  --lock-duration MS     how long a job's lock lasts without renewal (default 30000): a worker that dies holding a
                         job gives it back to the queue this long after its last renewal
  --stalled-interval MS  how often this worker looks for such jobs (default 30000)
  --warmup S             before taking jobs, upscale an S x S image (default 32; 0: none), which compiles the GPU
                         pipelines for that size: compiling holds up the event loop, and with it the job's lock
                         renewal, so give the size most inputs have
  --quiet                log only failures

SIGTERM or Ctrl-C: finish the jobs in hand, then stop (a second one stops at once; the jobs go back to the queue
after --lock-duration). Exit status 0 after a clean stop, 3 when the GPU device was lost and could not be reopened.`;

/** A job that fails for its input: not retried. */
class InputError extends Error {}

/** Sampling options of a job, checked with sr3 upscale's rules (engine/node/upscale-args.ts). */
function jobOptions(d: UpscaleJobData): {
  schedule: string;
  sampler: SamplerKind;
  eta?: number;
  seed: number;
  consistency: boolean;
} {
  let o: ReturnType<typeof jobSampling>;
  try {
    o = jobSampling(d);
  } catch (e) {
    throw new InputError((e as Error).message);
  }
  return { ...o, consistency: d.consistency ?? true };
}

/**
 * The worker's upscaler: the engine's reusable upscaler (createUpscaler: device opened, weights uploaded and the last
 * image shapes' samplers kept, once), plus what the worker needs to notice a lost device.
 */
export interface JobUpscaler {
  readonly description: string;
  readonly scale: number;
  upscale(
    img: Image,
    opts: ReturnType<typeof jobOptions> & { signal?: AbortSignal; onProgress?: (done: number, total: number) => void },
  ): Promise<Image>;
  /** Why the device was lost, or null while it works. */
  lost(): string | null;
  /** Destroy the device under the upscaler, as a driver reset would (tests: SR3_WORKER_LOSE_DEVICE). */
  loseDevice(): void;
  dispose(): void;
}

export async function openJobUpscaler(model: SR3Model): Promise<JobUpscaler> {
  const up = await createUpscaler({ model });
  const ctx = up.device;
  let lost: string | null = null;
  let disposed = false;
  ctx.device.lost.then((info) => {
    if (!disposed) lost = `GPU device lost (${info.reason}): ${info.message}`;
  });
  return {
    description: ctx.adapter.description,
    scale: up.scale,
    async upscale(img, o) {
      const r = await up.upscale(img, {
        schedule: o.schedule,
        sampler: o.sampler,
        eta: o.eta,
        seed: o.seed,
        consistency: o.consistency,
        signal: o.signal,
        onProgress: o.onProgress,
      });
      return r.image as Image;
    },
    lost: () => lost,
    loseDevice: () => ctx.device.destroy(),
    dispose() {
      disposed = true;
      up.dispose();
    },
  };
}

/**
 * Read a job's input; every failure here is the input's (missing file, corrupt or oversized image). The size is read
 * from the header and checked against what the output may be before anything is decoded, so an image too large to
 * write costs no memory.
 */
async function readJobInput(d: UpscaleJobData, scale: number): Promise<Image> {
  const name = d.input ?? d.name ?? 'input';
  try {
    let bytes: Uint8Array;
    if (d.inputBase64 !== undefined) {
      const b = Buffer.from(d.inputBase64, 'base64');
      if (b.byteLength > MAX_INLINE_BYTES)
        throw new InputError(`${name}: ${b.byteLength} bytes sent in the job, over the ${MAX_INLINE_BYTES}-byte limit`);
      bytes = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    } else if (d.input) {
      bytes = await readImageBytes(d.input);
    } else {
      throw new InputError('the job has neither an input path nor input bytes');
    }
    const { width, height } = imageSize(bytes, name);
    checkOutputSize(name, width, height, scale);
    return decodeImage(bytes, name, inputLimits(scale));
  } catch (e) {
    throw e instanceof InputError ? e : new InputError((e as Error).message);
  }
}

/** Remove temporary files an earlier try of this output left (a worker killed while writing). */
async function removeStaleTemps(output: string): Promise<void> {
  const dir = dirname(output);
  const prefix = `.${basename(output)}.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const n of names) if (n.startsWith(prefix) && n.endsWith('.tmp')) await unlink(join(dir, n)).catch(() => {});
}

export interface WorkerOptions {
  redis: string;
  queue?: string;
  concurrency?: number;
  model?: string;
  config?: string;
  lockDuration?: number;
  stalledInterval?: number;
  /** Side of the image upscaled before the first job (0: none; default 32). */
  warmup?: number;
  log?: (line: string) => void;
}

/**
 * Run a worker until SIGTERM/SIGINT (or `stop` resolves); resolves to the process exit status.
 * Everything that can fail cheaply (Redis URL, model file, device) fails before the first job is taken.
 */
export async function runWorker(opts: WorkerOptions, stop?: Promise<unknown>): Promise<number> {
  const log = opts.log ?? ((l: string) => console.error(l));
  const name = workerName();
  const { bullmq, Redis } = await loadQueueLibs();
  const connection = await connectRedis(Redis, checkRedisUrl(opts.redis), true);
  const modelFile = opts.model ?? DEFAULT_MODEL;
  const model = await openModel(modelFile, { config: opts.config, log });
  let up = await openJobUpscaler(model);
  log(
    `worker ${name}: model ${basename(modelFile)} (${up.scale}x) on ${up.description}, queue ${opts.queue ?? DEFAULT_QUEUE} at ${opts.redis}`,
  );
  const w = opts.warmup ?? 32;
  if (w > 0) {
    const t0 = performance.now();
    const img: Image = { width: w, height: w, channels: 3, bitDepth: 8, data: new Uint8Array(w * w * 3).fill(128) };
    await up.upscale(img, {
      schedule: defaultSchedule(2, DEFAULT_SAMPLER),
      sampler: DEFAULT_SAMPLER,
      seed: 0,
      consistency: true,
    });
    log(`worker ${name}: warmed up on a ${w}x${w} image in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }

  let exitCode = 0;
  let deviceGone = false;
  /** After a device loss: reopen once; if that fails the worker stops taking jobs and exits 3 (a supervisor restarts it). */
  const recover = async (): Promise<boolean> => {
    const why = up.lost();
    if (!why) return true;
    log(`worker ${name}: ${why}; reopening the device`);
    try {
      up.dispose();
    } catch {
      /* already gone */
    }
    try {
      up = await openJobUpscaler(model);
      log(`worker ${name}: device reopened (${up.description})`);
      return true;
    } catch (e) {
      log(`worker ${name}: cannot reopen the device (${(e as Error).message}); stopping with status 3`);
      deviceGone = true;
      exitCode = 3;
      return false;
    }
  };

  // tests only: SR3_WORKER_LOSE_DEVICE=n loses the device when the n-th job starts, so recovery is tested without a
  // GPU to reset
  const loseAt = Number(process.env.SR3_WORKER_LOSE_DEVICE ?? 0);
  let jobsStarted = 0;
  let stopping: Promise<void> | null = null;
  const processor = async (
    job: Job<UpscaleJobData, UpscaleJobResult>,
    _token?: string,
    signal?: AbortSignal,
  ): Promise<UpscaleJobResult> => {
    const t0 = performance.now();
    const d = job.data;
    const label = `job ${job.id} (${d.input ?? d.name ?? 'bytes'})`;
    try {
      if (!(await recover())) throw new Error(`${name}: the GPU device is gone`);
      if (!d || typeof d.output !== 'string' || !d.output.toLowerCase().endsWith('.png'))
        throw new InputError('the job has no output .png path');
      const o = jobOptions(d);
      const retry = job.attemptsStarted > 1 || job.stalledCounter > 0;
      if (retry) await removeStaleTemps(d.output);
      log(
        `${label}: started by ${name}${retry ? ` (try ${job.attemptsStarted}, stalled ${job.stalledCounter}x)` : ''}`,
      );
      const img = await readJobInput(d, up.scale);
      if (++jobsStarted === loseAt) up.loseDevice();
      const t1 = performance.now();
      let last = 0;
      const total = Number(o.schedule.split(':')[1]);
      await job.updateProgress({ done: 0, total } satisfies UpscaleJobProgress);
      const out = await up.upscale(img, {
        ...o,
        signal,
        onProgress: (done, tot) => {
          // at most 4 updates a second (each is a Redis round trip), and always the last
          const now = performance.now();
          if (done === tot || now - last > 250) {
            last = now;
            job.updateProgress({ done, total: tot } satisfies UpscaleJobProgress).catch(() => {});
          }
        },
      });
      const t2 = performance.now();
      try {
        await writePng(d.output, out);
      } catch (e) {
        // a missing folder or no permission is the request's fault; anything else (disk full) may pass
        const code = (e as { message: string }).message;
        if (/no such|permission|not a folder|EACCES|ENOENT/i.test(code)) throw new InputError(code);
        throw e;
      }
      const t3 = performance.now();
      const s = (a: number, b: number) => +((b - a) / 1000).toFixed(3);
      const result: UpscaleJobResult = {
        output: d.output,
        width: out.width,
        height: out.height,
        worker: name,
        device: up.description,
        seconds: { read: s(t0, t1), upscale: s(t1, t2), write: s(t2, t3), total: s(t0, t3) },
      };
      log(`${label}: done -> ${d.output} (${result.seconds.total} s)`);
      return result;
    } catch (e) {
      const msg = (e as Error).message;
      if (e instanceof InputError) {
        log(`${label}: failed for its input, not retried: ${msg}`);
        throw new bullmq.UnrecoverableError(msg);
      }
      log(
        `${label}: failed (${msg})${job.attemptsMade + 1 < (job.opts.attempts ?? 1) ? '; it will be tried again' : ''}`,
      );
      if (up.lost() && !(await recover())) stopping ??= shutdown(true);
      throw e;
    }
  };

  const worker = new bullmq.Worker<UpscaleJobData, UpscaleJobResult>(opts.queue ?? DEFAULT_QUEUE, processor, {
    connection,
    name,
    concurrency: opts.concurrency ?? 1,
    lockDuration: opts.lockDuration ?? 30_000,
    stalledInterval: opts.stalledInterval ?? 30_000,
    // a job found stalled twice (its workers died on it twice) fails rather than killing a third
    maxStalledCount: 1,
  });
  worker.on('error', (e) => log(`worker ${name}: ${e.message}`));
  worker.on('stalled', (id) => log(`job ${id}: its worker stopped renewing the lock; back on the queue`));

  let resolveDone: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  async function shutdown(now: boolean): Promise<void> {
    log(now ? `worker ${name}: stopping now` : `worker ${name}: finishing the jobs in hand, then stopping`);
    try {
      await worker.close(now);
    } finally {
      connection.disconnect();
      up.dispose();
      resolveDone();
    }
  }
  const onSignal = (sig: string) => {
    if (stopping) {
      log(`worker ${name}: ${sig} again: stopping without finishing (the jobs go back to the queue)`);
      process.exit(130);
    }
    stopping = shutdown(false);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  stop?.then(() => (stopping ??= shutdown(false)));
  try {
    await worker.waitUntilReady();
    log(`worker ${name}: ready`);
    await done;
    await stopping;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
  if (deviceGone) exitCode = 3;
  log(`worker ${name}: stopped`);
  return exitCode;
}

export async function workerCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      redis: { type: 'string' },
      queue: { type: 'string' },
      concurrency: { type: 'string', default: '1' },
      model: { type: 'string' },
      config: { type: 'string' },
      'lock-duration': { type: 'string' },
      'stalled-interval': { type: 'string' },
      warmup: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const int = (v: string | undefined, flag: string, min: number) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${flag} must be an integer >= ${min}, got '${v}'`);
    return n;
  };
  checkRedisUrl(values.redis);
  const quiet = !!values.quiet;
  return runWorker({
    redis: values.redis!,
    queue: values.queue,
    concurrency: int(values.concurrency, 'concurrency', 1),
    model: values.model,
    config: values.config,
    lockDuration: int(values['lock-duration'], 'lock-duration', 1000),
    stalledInterval: int(values['stalled-interval'], 'stalled-interval', 500),
    warmup: int(values.warmup, 'warmup', 0),
    log: (l) => {
      if (!quiet || /fail|lost|error|stopp/i.test(l)) console.error(`${new Date().toISOString()} ${l}`);
    },
  });
}
