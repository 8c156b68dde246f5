// The parts of bullmq and ioredis that the queue commands use, declared here rather than imported from the packages'
// own types: both are optional dependencies, so the project must typecheck (and every other command run) on an install
// that left them out. loadQueueLibs() loads them at run time, or throws a message naming the fix.

export interface RedisClient {
  connect(): Promise<void>;
  ping(): Promise<string>;
  disconnect(): void;
  on(event: 'error', listener: (e: Error) => void): unknown;
}
export interface RedisOptions {
  lazyConnect?: boolean;
  retryStrategy?: (times: number) => number | null;
  maxRetriesPerRequest?: number | null;
}
export type RedisCtor = new (url: string, opts?: RedisOptions) => RedisClient;

export interface Job<D, R> {
  id?: string;
  data: D;
  progress: unknown;
  returnvalue: R;
  failedReason?: string;
  attemptsMade: number;
  attemptsStarted: number;
  stalledCounter: number;
  finishedOn?: number;
  opts: { attempts?: number };
  updateProgress(progress: object | number): Promise<void>;
}

export interface JobsOptions {
  attempts?: number;
  backoff?: { type: 'exponential' | 'fixed'; delay: number };
  removeOnComplete?: { age?: number; count?: number };
  removeOnFail?: { age?: number; count?: number };
}

export interface Queue<D, R> {
  addBulk(jobs: { name: string; data: D; opts?: JobsOptions }[]): Promise<Job<D, R>[]>;
  getJob(id: string): Promise<Job<D, R> | undefined>;
  getJobState(id: string): Promise<string>;
  getJobCounts(...types: string[]): Promise<Record<string, number>>;
  getFailed(start?: number, end?: number): Promise<Job<D, R>[]>;
  getWorkersCount(): Promise<number>;
  close(): Promise<void>;
}

export interface WorkerOptions {
  connection: RedisClient;
  name?: string;
  concurrency?: number;
  lockDuration?: number;
  stalledInterval?: number;
  maxStalledCount?: number;
}

export interface Worker {
  on(event: 'error', listener: (e: Error) => void): unknown;
  on(event: 'stalled', listener: (jobId: string) => void): unknown;
  close(force?: boolean): Promise<void>;
  waitUntilReady(): Promise<unknown>;
}

export interface Bullmq {
  Queue: new <D, R>(name: string, opts: { connection: RedisClient }) => Queue<D, R>;
  Worker: new <D, R>(
    name: string,
    processor: (job: Job<D, R>, token?: string, signal?: AbortSignal) => Promise<R>,
    opts: WorkerOptions,
  ) => Worker;
  /** Thrown by a processor: the job fails at once, whatever attempts are left. */
  UnrecoverableError: new (
    message: string,
  ) => Error;
}

/** Load bullmq and ioredis, or throw a message naming the fix. */
export async function loadQueueLibs(): Promise<{ bullmq: Bullmq; Redis: RedisCtor }> {
  // specifiers in variables: TypeScript does not look for these optional packages
  const names = { bullmq: 'bullmq', ioredis: 'ioredis' };
  const missing: string[] = [];
  let bullmq: Bullmq | undefined;
  let Redis: RedisCtor | undefined;
  try {
    bullmq = (await import(names.bullmq)) as Bullmq;
  } catch {
    missing.push('bullmq');
  }
  try {
    const m = (await import(names.ioredis)) as { Redis?: RedisCtor; default?: RedisCtor };
    Redis = m.Redis ?? m.default;
  } catch {
    missing.push('ioredis');
  }
  if (!bullmq || !Redis) {
    throw new Error(
      `the queue commands (worker, submit, queue) need the optional package${missing.length > 1 ? 's' : ''} ${missing.join(' and ')}, ` +
        `which this install left out (npm ci --omit=optional?): run \`npm install bullmq ioredis\` in the sr3-wgsl folder`,
    );
  }
  return { bullmq, Redis };
}
