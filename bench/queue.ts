// Queue throughput: images per minute through `sr3 worker` processes on a Redis queue (one, then two workers on this
// machine's device), against a plain in-process loop over the same images with the same steps (device and model opened
// once, read -> upscale -> write PNG). The difference per image is what the queue costs a job: BullMQ's round trips,
// progress updates, lock renewals, and the handoff between jobs.
//
//   npx tsx bench/queue.ts [--images 12] [--side 16] [--steps 2] [--workers 1,2] [--model f --config c] [--json]
//
// Starts its own redis-server on 127.0.0.1 (a free port, no persistence; scripts/setup-redis.sh installs it). Each
// worker warms up on an image of the benchmark's size first, and the in-process loop upscales one image before it is
// timed, so neither side counts pipeline compilation. Timing for the workers runs from enqueueing to the last job's
// completion as seen by a poller (every 100 ms).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_SAMPLER, defaultSchedule } from '../engine/upscale.ts';
import { readImage } from '../engine/node/image-io.ts';
import { openModel } from '../engine/node/model.ts';
import { encodePng, writePng, type Image } from '../engine/node/png.ts';
import { enqueueUpscale, loadQueueLibs, watchUpscales } from '../engine/node/queue.ts';
import { DEFAULT_MODEL } from '../engine/node/upscale.ts';
import { openJobUpscaler } from '../engine/node/worker.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    images: { type: 'string', default: '12' },
    side: { type: 'string', default: '16' },
    steps: { type: 'string', default: '2' },
    workers: { type: 'string', default: '1,2' },
    model: { type: 'string' },
    config: { type: 'string' },
    json: { type: 'boolean' },
  },
});
const N = Number(values.images);
const SIDE = Number(values.side);
const STEPS = Number(values.steps);
const modelArgs = [
  ...(values.model ? ['--model', values.model] : []),
  ...(values.config ? ['--config', values.config] : []),
];
const dir = mkdtempSync(join(tmpdir(), 'sr3-bench-queue-'));
const rows: Record<string, unknown>[] = [];
const children: ChildProcess[] = [];

function image(seed: number): Image {
  const data = new Uint8Array(SIDE * SIDE * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.round(((Math.sin(i * 0.37 + seed * 1.3) + 1) / 2) * 255);
  return { width: SIDE, height: SIDE, channels: 3, bitDepth: 8, data };
}

function report(row: Record<string, unknown>) {
  rows.push(row);
  if (values.json) console.log(JSON.stringify(row));
  else
    console.log(
      `${String(row.name).padEnd(22)} ${(row.images_per_min as number).toFixed(1).padStart(7)} images/min   ${(row.s_per_image as number).toFixed(3)} s/image${row.job_total_s ? `   (in the processor: ${(row.job_total_s as number).toFixed(3)} s a job, ${(row.job_upscale_s as number).toFixed(3)} s of it upscaling)` : ''}`,
    );
}

async function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

async function startRedis(): Promise<string> {
  const port = await freePort();
  const p = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  );
  children.push(p);
  const url = `redis://127.0.0.1:${port}`;
  const { Redis } = await loadQueueLibs();
  for (let i = 0; i < 100; i++) {
    const c = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    c.on('error', () => {});
    try {
      await c.connect();
      await c.ping();
      c.disconnect();
      return url;
    } catch {
      c.disconnect();
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error('redis-server did not start (scripts/setup-redis.sh installs it)');
}

async function startWorker(url: string, queue: string): Promise<ChildProcess> {
  const p = spawn(
    process.execPath,
    [join(ROOT, 'bin', 'sr3.js'), 'worker', '--redis', url, '--queue', queue, '--warmup', String(SIDE), ...modelArgs],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  children.push(p);
  await new Promise<void>((res, rej) => {
    let log = '';
    p.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
      if (/: ready\n/.test(log)) res();
    });
    p.on('exit', (code) => rej(new Error(`worker exited (${code}):\n${log}`)));
  });
  return p;
}

async function main() {
  const inDir = join(dir, 'in');
  mkdirSync(inDir);
  const inputs = Array.from({ length: N }, (_, k) => {
    const f = join(inDir, `img${k}.png`);
    writeFileSync(f, encodePng(image(k)));
    return f;
  });
  const schedule = defaultSchedule(STEPS, DEFAULT_SAMPLER);

  // The plain loop: what a worker does per job, without the queue.
  const model = await openModel(values.model ?? DEFAULT_MODEL, { config: values.config, log: () => {} });
  const up = await openJobUpscaler(model);
  const device = up.description;
  const opts = { schedule, sampler: DEFAULT_SAMPLER, seed: 0, consistency: true };
  await up.upscale(image(999), opts); // compile first
  const loopDir = join(dir, 'loop');
  mkdirSync(loopDir);
  let t0 = performance.now();
  for (const [k, f] of inputs.entries())
    await writePng(join(loopDir, `img${k}_sr.png`), await up.upscale(await readImage(f), opts));
  let secs = (performance.now() - t0) / 1000;
  up.dispose();
  report({
    name: 'in-process loop',
    kind: 'loop',
    workers: 0,
    images: N,
    side: SIDE,
    steps: STEPS,
    seconds: secs,
    images_per_min: (60 * N) / secs,
    s_per_image: secs / N,
    device,
  });

  const url = await startRedis();
  for (const w of values.workers!.split(',').map(Number)) {
    const queue = `bench-${w}`;
    const procs = await Promise.all(Array.from({ length: w }, () => startWorker(url, queue)));
    const outDir = join(dir, `out${w}`);
    mkdirSync(outDir);
    t0 = performance.now();
    const ids = await enqueueUpscale(
      inputs.map((f, k) => ({ input: f, output: join(outDir, `img${k}_sr.png`), steps: STEPS, seed: 0 })),
      { redis: url, queue },
    );
    const st = await watchUpscales(ids, { redis: url, queue, intervalMs: 100 });
    secs = (performance.now() - t0) / 1000;
    if (st.failed) throw new Error(`${st.failed} jobs failed: ${st.failures.map((f) => f.reason).join('; ')}`);
    const res = [...st.results.values()];
    const mean = (f: (r: (typeof res)[number]) => number) => res.reduce((a, r) => a + f(r), 0) / res.length;
    report({
      name: `${w} worker${w > 1 ? 's' : ''}`,
      kind: 'queue',
      workers: w,
      images: N,
      side: SIDE,
      steps: STEPS,
      seconds: secs,
      images_per_min: (60 * N) / secs,
      s_per_image: secs / N,
      // inside the worker, per job: reading, upscaling, writing, and the processor's whole time
      job_read_s: mean((r) => r.seconds.read),
      job_upscale_s: mean((r) => r.seconds.upscale),
      job_write_s: mean((r) => r.seconds.write),
      job_total_s: mean((r) => r.seconds.total),
      device,
    });
    await Promise.all(
      procs.map(
        (p) =>
          new Promise((r) => {
            p.on('exit', r);
            p.kill('SIGTERM');
          }),
      ),
    );
  }
  const loop = rows[0].s_per_image as number;
  const one = rows.find((r) => r.workers === 1);
  if (one && !values.json) {
    console.log(
      `queue overhead per job, 1 worker: ${(((one.s_per_image as number) - loop) * 1000).toFixed(0)} ms against the loop; ` +
        `${(((one.s_per_image as number) - (one.job_total_s as number)) * 1000).toFixed(0)} ms of wall time per job outside the worker's processor`,
    );
  }
}

try {
  await main();
} finally {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
