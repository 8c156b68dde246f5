// Upscaling jobs on a Redis queue (BullMQ): what a job holds, how the optional packages are loaded, and the Node API
// for submitting (enqueueUpscale) and watching (watchUpscales, queueStatus). `sr3 worker` (worker.ts) takes the jobs;
// `sr3 submit` and `sr3 queue` (submit.ts) are the command-line front. bullmq and ioredis are optional dependencies,
// imported here only, so the rest of the engine never loads them.
import { hostname } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { DEFAULT_STEPS } from '../upscale.ts';
import { loadQueueLibs, type Job, type Queue, type RedisClient, type RedisCtor } from './queue-libs.ts';

export { loadQueueLibs };

/** The queue every command uses unless given --queue. */
export const DEFAULT_QUEUE = 'sr3-upscale';
/**
 * The most bytes of an input image that may travel inside a job (`input` given as bytes, `sr3 submit --send-bytes`).
 * Redis holds every job until it is removed, base64 adds a third, and every worker reads the whole job: anything larger
 * goes as a path on storage the workers share.
 */
export const MAX_INLINE_BYTES = 1024 * 1024;
/** How often a job is tried before it fails for good (device loss, a worker that died twice on it, Redis hiccups). */
export const DEFAULT_ATTEMPTS = 3;

/** The data of one upscaling job, as stored in Redis (JSON). */
export interface UpscaleJobData {
  /** Absolute path of the input PNG/JPEG on storage the workers share; absent when `inputBase64` carries it. */
  input?: string;
  /** The input file's bytes, base64 (at most MAX_INLINE_BYTES before encoding). */
  inputBase64?: string;
  /** A name for messages when the input travels as bytes. */
  name?: string;
  /** Absolute path of the output PNG, written atomically by the worker. */
  output: string;
  steps?: number;
  schedule?: string;
  sampler?: string;
  eta?: number;
  seed?: number;
  consistency?: boolean;
}

/** What a worker returns for a finished job (BullMQ keeps it as the job's return value). */
export interface UpscaleJobResult {
  output: string;
  width: number;
  height: number;
  /** The worker that did it: host:pid. */
  worker: string;
  device: string;
  /** Seconds: reading the input, upscaling, writing the output, and the whole job. */
  seconds: { read: number; upscale: number; write: number; total: number };
}

/** A job's progress as reported through BullMQ: sampling steps done of total. */
export interface UpscaleJobProgress {
  done: number;
  total: number;
}

/** One image to upscale. */
export interface UpscaleRequest {
  /** Path of the input on shared storage (made absolute here), or its bytes (at most MAX_INLINE_BYTES). */
  input: string | Uint8Array;
  /** Path of the output PNG on shared storage (made absolute here). */
  output: string;
  /** Name used in messages for byte inputs. */
  name?: string;
  steps?: number;
  schedule?: string;
  sampler?: string;
  eta?: number;
  seed?: number;
  consistency?: boolean;
}

export interface QueueConnectionOptions {
  /** redis://[user:password@]host:port[/db] (rediss:// for TLS). */
  redis: string;
  /** Queue name (default DEFAULT_QUEUE). */
  queue?: string;
}

/** Check a --redis value before anything connects. */
export function checkRedisUrl(url: string | undefined): string {
  if (!url) throw new Error('--redis is required: the Redis server that holds the queue, e.g. redis://127.0.0.1:6379');
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`--redis ${url}: not a URL; give redis://host:port (or rediss:// for TLS)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
    throw new Error(`--redis ${url}: give a redis:// or rediss:// URL`);
  return url;
}

/**
 * A Redis connection for BullMQ. The first connection is tried once, so a wrong URL or a server that is down gives an
 * error naming it at once; after that ioredis reconnects on its own (a Redis restart does not stop a worker).
 * `blocking` connections (workers) must never give up a command: BullMQ needs maxRetriesPerRequest = null there.
 */
export async function connectRedis(Redis: RedisCtor, url: string, blocking: boolean): Promise<RedisClient> {
  const probe = new Redis(checkRedisUrl(url), {
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
  });
  let cause = '';
  probe.on('error', (e: Error) => (cause ||= e.message)); // the socket's error (ECONNREFUSED...); connect() only says "closed"
  try {
    await probe.connect();
    await probe.ping();
  } catch (e) {
    probe.disconnect();
    const why = (cause || (e as Error).message).replace(/\.+$/, '');
    throw new Error(
      `cannot reach Redis at ${url}: ${why}. Is redis-server running there (scripts/setup-redis.sh installs it)?`,
    );
  }
  probe.disconnect();
  const client = new Redis(url, { maxRetriesPerRequest: blocking ? null : 3 });
  client.on('error', (e) => console.error(`redis ${url}: ${e.message}`));
  return client;
}

/** Check one request and turn it into job data: absolute paths, bytes within the limit. */
export function jobData(r: UpscaleRequest): UpscaleJobData {
  if (!r.output) throw new Error('every request needs an output path');
  if (!r.output.toLowerCase().endsWith('.png'))
    throw new Error(`${r.output}: the output is written as PNG; give a name ending in .png`);
  const data: UpscaleJobData = {
    output: isAbsolute(r.output) ? r.output : resolve(r.output),
    steps: r.steps,
    schedule: r.schedule,
    sampler: r.sampler,
    eta: r.eta,
    seed: r.seed,
    consistency: r.consistency,
  };
  if (typeof r.input === 'string') {
    data.input = isAbsolute(r.input) ? r.input : resolve(r.input);
  } else {
    if (r.input.byteLength > MAX_INLINE_BYTES) {
      throw new Error(
        `${r.name ?? 'input'}: ${r.input.byteLength} bytes is over the ${MAX_INLINE_BYTES}-byte limit for images sent inside a job; ` +
          'put it on storage the workers share and pass its path',
      );
    }
    data.inputBase64 = Buffer.from(r.input.buffer, r.input.byteOffset, r.input.byteLength).toString('base64');
    data.name = r.name;
  }
  for (const k of Object.keys(data) as (keyof UpscaleJobData)[]) if (data[k] === undefined) delete data[k];
  return data;
}

/** An open queue and the connection under it; close() closes both. */
export interface OpenQueue {
  queue: Queue<UpscaleJobData, UpscaleJobResult>;
  close(): Promise<void>;
}

export async function openQueue(opts: QueueConnectionOptions): Promise<OpenQueue> {
  const { bullmq, Redis } = await loadQueueLibs();
  const connection = await connectRedis(Redis, opts.redis, false);
  const queue = new bullmq.Queue<UpscaleJobData, UpscaleJobResult>(opts.queue ?? DEFAULT_QUEUE, { connection });
  return {
    queue,
    async close() {
      await queue.close();
      connection.disconnect();
    },
  };
}

export interface EnqueueOptions extends QueueConnectionOptions {
  /** Tries per job (default DEFAULT_ATTEMPTS); a job that fails for its input is never retried. */
  attempts?: number;
}

/**
 * Put upscaling jobs on the queue; returns their ids, in order. Every request is checked before the first is added,
 * and all are added in one transaction, so a bad request adds none.
 */
export async function enqueueUpscale(requests: UpscaleRequest[], opts: EnqueueOptions): Promise<string[]> {
  const data = requests.map(jobData);
  const outputs = new Map<string, number>();
  data.forEach((d, i) => {
    const j = outputs.get(d.output);
    if (j !== undefined) throw new Error(`requests ${j} and ${i} write the same output ${d.output}`);
    outputs.set(d.output, i);
  });
  const q = await openQueue(opts);
  try {
    const jobs = await q.queue.addBulk(
      data.map((d) => ({
        name: 'upscale',
        data: d,
        opts: {
          attempts: opts.attempts ?? DEFAULT_ATTEMPTS,
          backoff: { type: 'exponential', delay: 2000 },
          // keep finished jobs for `sr3 queue` and for --wait, but not forever
          removeOnComplete: { age: 7 * 24 * 3600, count: 100_000 },
          removeOnFail: { age: 30 * 24 * 3600, count: 100_000 },
        },
      })),
    );
    return jobs.map((j) => j.id!);
  } finally {
    await q.close();
  }
}

/** Where a set of jobs stands. */
export interface WatchState {
  total: number;
  completed: number;
  failed: number;
  /** Sampling steps done over all jobs, and their total (unstarted jobs count their steps as not done). */
  stepsDone: number;
  stepsTotal: number;
  failures: { id: string; input: string; reason: string }[];
  results: Map<string, UpscaleJobResult>;
}

/** The sampling steps a job will take (its progress total). */
export function jobSteps(d: UpscaleJobData): number {
  const fromSchedule = d.schedule ? Number(d.schedule.split(':')[1]) : NaN;
  return Number.isInteger(fromSchedule) ? fromSchedule : (d.steps ?? DEFAULT_STEPS);
}

const inputName = (d: UpscaleJobData) => d.input ?? d.name ?? '(bytes)';

/**
 * Follow jobs until each has completed or failed for good, calling onUpdate as they move. Polls Redis (every
 * `intervalMs`, default 500), so it sees jobs that finished before it started and survives a reconnect.
 */
export async function watchUpscales(
  ids: string[],
  opts: QueueConnectionOptions & { intervalMs?: number; onUpdate?: (s: WatchState) => void; signal?: AbortSignal },
): Promise<WatchState> {
  const q = await openQueue(opts);
  const state: WatchState = {
    total: ids.length,
    completed: 0,
    failed: 0,
    stepsDone: 0,
    stepsTotal: 0,
    failures: [],
    results: new Map(),
  };
  const stepsOf = new Map<string, number>();
  const doneSteps = new Map<string, number>();
  let pending = [...ids];
  try {
    while (pending.length > 0) {
      opts.signal?.throwIfAborted();
      const still: string[] = [];
      for (let i = 0; i < pending.length; i += 200) {
        const chunk = pending.slice(i, i + 200);
        // the state first: a job read after it completed has its return value (read before, it might not)
        const states = await Promise.all(chunk.map((id) => q.queue.getJobState(id)));
        const jobs = await Promise.all(chunk.map((id) => q.queue.getJob(id)));
        chunk.forEach((id, k) => {
          const job = jobs[k] as Job<UpscaleJobData, UpscaleJobResult> | undefined;
          if (!job) {
            state.failed++;
            state.failures.push({
              id,
              input: '?',
              reason: 'the job is gone from the queue (removed, or the queue was emptied)',
            });
            return;
          }
          const p = job.progress as UpscaleJobProgress | number;
          const total = typeof p === 'object' && p ? p.total : jobSteps(job.data);
          stepsOf.set(id, total);
          if (states[k] === 'completed') {
            state.completed++;
            state.results.set(id, job.returnvalue);
            doneSteps.set(id, total);
          } else if (states[k] === 'failed') {
            state.failed++;
            state.failures.push({ id, input: inputName(job.data), reason: job.failedReason ?? 'failed' });
            doneSteps.set(id, total);
          } else {
            doneSteps.set(id, typeof p === 'object' && p ? p.done : 0);
            still.push(id);
          }
        });
      }
      pending = still;
      state.stepsTotal = [...stepsOf.values()].reduce((a, b) => a + b, 0);
      state.stepsDone = [...doneSteps.values()].reduce((a, b) => a + b, 0);
      opts.onUpdate?.(state);
      if (pending.length > 0) await new Promise((r) => setTimeout(r, opts.intervalMs ?? 500));
    }
    return state;
  } finally {
    await q.close();
  }
}

/** The queue's counts and its most recent failures. */
export interface QueueStatus {
  counts: { waiting: number; active: number; delayed: number; completed: number; failed: number };
  workers: number;
  failures: { id: string; input: string; reason: string; attempts: number; finishedOn?: number }[];
}

export async function queueStatus(opts: QueueConnectionOptions & { failures?: number }): Promise<QueueStatus> {
  const q = await openQueue(opts);
  try {
    const c = await q.queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'completed', 'failed');
    const failed = await q.queue.getFailed(0, (opts.failures ?? 10) - 1);
    const workers = await q.queue.getWorkersCount();
    return {
      counts: {
        waiting: (c.waiting ?? 0) + (c.prioritized ?? 0),
        active: c.active ?? 0,
        delayed: c.delayed ?? 0,
        completed: c.completed ?? 0,
        failed: c.failed ?? 0,
      },
      workers,
      failures: failed.map((j) => ({
        id: j.id!,
        input: inputName(j.data as UpscaleJobData),
        reason: j.failedReason ?? 'failed',
        attempts: j.attemptsMade,
        finishedOn: j.finishedOn,
      })),
    };
  } finally {
    await q.close();
  }
}

/** This process as a worker name: host:pid. */
export const workerName = () => `${hostname()}:${process.pid}`;
