// The Redis queue end to end: a real redis-server (started here on 127.0.0.1 on a free port, no persistence, stopped at
// the end), two `sr3 worker` processes with the golden tiny model, and `sr3 submit --wait` over a folder of ten small
// images and one corrupt file. One worker is SIGKILLed in the middle of a job: every job still completes exactly once,
// every output is a valid PNG (the killed one bit for bit what `sr3 upscale` makes), and no partial file is left.
// The corrupt input fails at once with its message and is not retried. SIGTERM lets a worker finish its job and stop.
// Short lock and stalled-check intervals keep the recovery to seconds.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runCli } from './helpers/cli.ts';
import { FIXTURES } from './helpers/golden.ts';
import { encodePng, readPng, type Image } from '../engine/node/png.ts';
import { enqueueUpscale, loadQueueLibs, openQueue, queueStatus } from '../engine/node/queue.ts';

const ROOT = resolve(FIXTURES, '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'sr3-queue-'));
const inDir = join(dir, 'in');
const outDir = join(dir, 'out');
mkdirSync(inDir);
mkdirSync(outDir);
const model = [
  '--model',
  join(FIXTURES, 'golden', 'tiny', 'model_gen.pth'),
  '--config',
  join(FIXTURES, 'golden', 'tiny', 'config.json'),
];
const QUEUE = 'sr3-test';
const SIDE = 16;

let redis: ChildProcess | null = null;
let url = '';
const workers: Worker[] = [];

interface Worker {
  proc: ChildProcess;
  lines: string[];
  exited: Promise<number | null>;
}

function image(seed: number): Image {
  const data = new Uint8Array(SIDE * SIDE * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.round(((Math.sin(i * 0.37 + seed * 1.3) + 1) / 2) * 255);
  return { width: SIDE, height: SIDE, channels: 3, bitDepth: 8, data };
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

async function until<T>(
  what: string,
  f: () => T | undefined | Promise<T | undefined>,
  timeoutMs: number,
  everyMs = 50,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

function startWorker(env: Record<string, string> = {}): Worker {
  const proc = spawn(
    process.execPath,
    [
      join(ROOT, 'bin', 'sr3.js'),
      'worker',
      '--redis',
      url,
      '--queue',
      QUEUE,
      ...model,
      '--warmup',
      String(SIDE),
      '--lock-duration',
      '6000',
      '--stalled-interval',
      '1000',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
  );
  const lines: string[] = [];
  let buf = '';
  const take = (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts);
  };
  proc.stdout!.on('data', take);
  proc.stderr!.on('data', take);
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const w = { proc, lines, exited };
  workers.push(w);
  return w;
}

/** The jobs a worker's log says it started / finished: [job id, input]. */
const started = (w: Worker) =>
  w.lines.flatMap((l) => [...l.matchAll(/job (\d+) \(([^)]*)\): started by/g)].map((m) => [m[1], m[2]] as const));
const finished = (w: Worker) =>
  w.lines.flatMap((l) => [...l.matchAll(/job (\d+) \([^)]*\): done ->/g)].map((m) => m[1]));

test.before(async () => {
  const v = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (v.error)
    throw new Error(
      'redis-server is not installed: run `bash scripts/setup-redis.sh` (Debian: apt-get install redis-server)',
    );
  await loadQueueLibs(); // bullmq and ioredis (optional dependencies) must be there for this test
  const port = await freePort();
  url = `redis://127.0.0.1:${port}`;
  // loopback only, nothing written to disk
  redis = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  );
  const { Redis } = await loadQueueLibs();
  await until(
    'redis-server to answer',
    async () => {
      const c = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
      c.on('error', () => {});
      try {
        await c.connect();
        return (await c.ping()) === 'PONG';
      } catch {
        return undefined;
      } finally {
        c.disconnect();
      }
    },
    20_000,
    200,
  );
});

test.after(async () => {
  for (const w of workers) if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGKILL');
  if (redis) {
    const gone = new Promise((r) => redis!.on('exit', r));
    redis.kill('SIGTERM');
    await gone;
  }
  rmSync(dir, { recursive: true, force: true });
});

test('bad submissions are refused before anything is queued, with the reason', async () => {
  mkdirSync(join(dir, 'a'));
  mkdirSync(join(dir, 'b'));
  writeFileSync(join(dir, 'a', 'same.png'), encodePng(image(1)));
  writeFileSync(join(dir, 'b', 'same.png'), encodePng(image(2)));
  writeFileSync(join(dir, 'big.png'), new Uint8Array(1024 * 1024 + 1));
  const base = ['submit', '--redis', url, '--queue', QUEUE];
  const cases: [string[], RegExp][] = [
    [['submit', join(dir, 'a'), '-o', outDir], /--redis is required/],
    [['submit', join(dir, 'a'), '-o', outDir, '--redis', 'http://127.0.0.1:1'], /redis:\/\/ or rediss:\/\//],
    [[...base, join(dir, 'a')], /-o\/--out is required/],
    [[...base, join(dir, 'a'), '-o', join(dir, 'nowhere')], /no such folder/],
    [[...base, join(dir, 'missing.png'), '-o', outDir], /no such file or folder/],
    [[...base, join(dir, 'a'), join(dir, 'b'), '-o', outDir], /would both be written to .*same_sr\.png/],
    [[...base, join(dir, 'big.png'), '-o', outDir, '--send-bytes'], /over the 1048576-byte limit .* pass its path/],
    [[...base, join(dir, 'a'), '-o', outDir, '--steps', '1'], /--steps must be an integer from 2 to/],
    // the sampling flags get sr3 upscale's checks before anything is queued (they used to fail only in the worker)
    [
      [...base, join(dir, 'a'), '-o', outDir, '--sampler', 'ddim', '--eta', 'Infinity'],
      /--eta must be a number from 0 .* to 1 .*got 'Infinity'/,
    ],
    [[...base, join(dir, 'a'), '-o', outDir, '--seed', '1e300'], /--seed must be an integer from 0 to .*got '1e300'/],
    [[...base, join(dir, 'a'), '-o', outDir, '--schedule', 'wobbly:10'], /--schedule 'wobbly:10': unknown kind/],
    [
      ['queue', '--redis', 'redis://127.0.0.1:1'],
      /cannot reach Redis at redis:\/\/127\.0\.0\.1:1: connect ECONNREFUSED/,
    ],
  ];
  for (const [args, want] of cases) {
    const r = await runCli(args);
    assert.is(r.code, 1, args.join(' '));
    assert.match(r.out, want);
  }
  const s = await queueStatus({ redis: url, queue: QUEUE });
  assert.equal(Object.values(s.counts), [0, 0, 0, 0, 0]);
});

test('two workers, one SIGKILLed mid-job: every job completes exactly once, valid PNGs, nothing partial; a corrupt input fails at once', async () => {
  for (let k = 0; k < 10; k++) writeFileSync(join(inDir, `img${k}.png`), encodePng(image(k)));
  writeFileSync(join(inDir, 'broken.png'), encodePng(image(99)).subarray(0, 60)); // a truncated PNG
  const a = startWorker();
  const b = startWorker();
  await until(
    'both workers ready',
    () => a.lines.some((l) => /: ready$/.test(l)) && b.lines.some((l) => /: ready$/.test(l)),
    600_000,
    200,
  ).catch((e) => {
    throw new Error(`${e.message}\nworker A:\n${a.lines.join('\n')}\nworker B:\n${b.lines.join('\n')}`);
  });

  const submit = runCli([
    'submit',
    inDir,
    '--redis',
    url,
    '--queue',
    QUEUE,
    '-o',
    outDir,
    '--steps',
    '2',
    '--wait',
    '--quiet',
  ]);

  // Kill A half-way through one of its images: after the first of its two steps has been reported.
  const q = await openQueue({ redis: url, queue: QUEUE });
  let victim: readonly [string, string];
  try {
    // the image A works on now, once it has reported the first of its two steps (A may finish some before)
    victim = await until(
      'worker A to be half-way through an image',
      async () => {
        const now = started(a)
          .filter(([, input]) => !input.endsWith('broken.png'))
          .at(-1);
        if (!now) return undefined;
        const p = (await q.queue.getJob(now[0]))?.progress as { done: number; total: number } | undefined;
        return p && p.done === 1 && p.total === 2 ? now : undefined;
      },
      180_000,
      10,
    );
  } finally {
    await q.close();
  }
  a.proc.kill('SIGKILL');
  await a.exited;
  assert.not.ok(
    finished(a).includes(victim[0]),
    `worker A finished job ${victim[0]} before it was killed: the test did not kill it mid-job`,
  );

  const r = await submit;
  assert.is(r.code, 1, r.out); // one job failed: the corrupt one
  assert.match(r.out, /10 done, 1 failed, of 11/);
  assert.match(r.out, /broken\.png: truncated PNG/);

  // Every good job completed exactly once over both workers; the killed one by B, after it was found stalled.
  const done = [...finished(a), ...finished(b)].sort();
  const logs = `\nworker A:\n${a.lines.join('\n')}\nworker B:\n${b.lines.join('\n')}`;
  assert.is(done.length, 10, `completions: ${done.join(', ')}${logs}`);
  assert.is(new Set(done).size, 10, `a job completed twice: ${done.join(', ')}`);
  assert.ok(
    b.lines.some((l) => new RegExp(`job ${victim[0]} \\(.*\\): started by .*stalled 1x`).test(l)),
    `B did not take over job ${victim[0]}:\n${b.lines.join('\n')}`,
  );

  // The outputs: exactly the ten PNGs (no temporary or partial files), each valid and 4x the input.
  assert.equal(readdirSync(outDir).sort(), Array.from({ length: 10 }, (_, k) => `img${k}_sr.png`).sort());
  for (const f of readdirSync(outDir)) {
    const img = await readPng(join(outDir, f));
    assert.equal([img.width, img.height, img.channels], [4 * SIDE, 4 * SIDE, 3], f);
  }
  // The killed job's output is what an in-process upscale with the same seed and steps makes.
  const ref = join(dir, 'ref.png');
  const u = await runCli(['upscale', victim[1], '-o', ref, '--steps', '2', '--quiet', ...model]);
  assert.is(u.code, 0, u.out);
  const name = victim[1]
    .split('/')
    .pop()!
    .replace(/\.png$/, '_sr.png');
  assert.equal(
    Array.from((await readPng(join(outDir, name))).data),
    Array.from((await readPng(ref)).data),
    `${name} differs from sr3 upscale's`,
  );

  // The corrupt input: failed on its first try, with its message, never retried (three tries were allowed).
  const s = await queueStatus({ redis: url, queue: QUEUE });
  assert.equal(
    [s.counts.completed, s.counts.failed, s.counts.waiting, s.counts.active, s.counts.delayed],
    [10, 1, 0, 0, 0],
  );
  assert.is(s.failures.length, 1);
  assert.match(s.failures[0].reason, /broken\.png: truncated PNG/);
  assert.is(s.failures[0].attempts, 1);
  const brokenStarts = [...started(a), ...started(b)].filter(([, input]) => input.endsWith('broken.png'));
  assert.is(brokenStarts.length, 1, 'the corrupt input was tried more than once');
  const shown = await runCli(['queue', '--redis', url, '--queue', QUEUE]);
  assert.match(shown.out, /0 waiting, 0 active, 0 delayed \(to be retried\), 10 done, 1 failed; 1 worker connected/);
  assert.match(shown.out, /broken\.png: truncated PNG .*\(1 try\)/);
});

test('SIGTERM: the worker finishes the job in hand, takes no other, and exits 0', async () => {
  const b = workers[1];
  const ids = await enqueueUpscale(
    [0, 1].map((k) => ({ input: join(inDir, `img${k}.png`), output: join(outDir, `term${k}.png`), steps: 2, seed: 3 })),
    { redis: url, queue: QUEUE },
  );
  const job = await until(
    'worker B to start the first job',
    () => started(b).find(([id]) => id === ids[0]),
    60_000,
    20,
  );
  b.proc.kill('SIGTERM');
  const code = await until(
    'worker B to stop',
    () => (b.proc.exitCode !== null || b.proc.signalCode !== null ? b.exited : undefined),
    120_000,
    50,
  );
  assert.is(await code, 0, b.lines.join('\n'));
  assert.ok(finished(b).includes(job[0]), `B stopped without finishing job ${job[0]}:\n${b.lines.join('\n')}`);
  const img = await readPng(join(outDir, 'term0.png'));
  assert.equal([img.width, img.height], [4 * SIDE, 4 * SIDE]);
  const q = await openQueue({ redis: url, queue: QUEUE });
  try {
    assert.is(await q.queue.getJobState(ids[0]), 'completed');
    assert.is(await q.queue.getJobState(ids[1]), 'waiting'); // left for another worker
    assert.is((await q.queue.getJob(ids[0]))!.returnvalue.output, join(outDir, 'term0.png'));
  } finally {
    await q.close();
  }
  assert.not.ok(readdirSync(outDir).includes('term1.png'));
});

test('a lost device: the job is tried again, the worker reopens its device and goes on', async () => {
  // The job SIGTERM left waiting is the first this worker takes; its device is destroyed as that job starts.
  const c = startWorker({ SR3_WORKER_LOSE_DEVICE: '1' });
  const q = await openQueue({ redis: url, queue: QUEUE });
  try {
    const waiting = await q.queue.getJobCounts('waiting');
    assert.is(waiting.waiting, 1);
    // and one more whose input travels inside the job, as bytes
    await enqueueUpscale(
      [{ input: new Uint8Array(encodePng(image(5))), name: 'bytes.png', output: join(outDir, 'bytes.png'), steps: 2 }],
      { redis: url, queue: QUEUE },
    );
    await until(
      'the two jobs to complete',
      () => (readdirSync(outDir).includes('term1.png') && readdirSync(outDir).includes('bytes.png')) || undefined,
      600_000,
      200,
    ).catch((e) => {
      throw new Error(`${e.message}\nworker C:\n${c.lines.join('\n')}`);
    });
    const log = c.lines.join('\n');
    assert.match(log, /failed \(GPU device lost \(destroyed\)[^\n]*; it will be tried again/);
    assert.match(log, /device reopened/);
    assert.match(log, /started by .*\(try 2/);
    for (const f of ['term1.png', 'bytes.png']) {
      const img = await readPng(join(outDir, f));
      assert.equal([img.width, img.height], [4 * SIDE, 4 * SIDE]);
    }
    // the bytes job upscaled the same image as the path job img5 of the first test, with the same seed and steps
    assert.equal(
      Array.from((await readPng(join(outDir, 'bytes.png'))).data),
      Array.from((await readPng(join(outDir, 'img5_sr.png'))).data),
    );
    const s = await queueStatus({ redis: url, queue: QUEUE });
    assert.equal([s.counts.waiting, s.counts.active, s.counts.delayed, s.counts.failed], [0, 0, 0, 1]);
  } finally {
    await q.close();
  }
  c.proc.kill('SIGTERM');
  assert.is(await c.exited, 0, c.lines.join('\n'));
});

test.run();
