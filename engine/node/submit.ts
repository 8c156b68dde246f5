// `sr3 submit` (put upscaling jobs on the Redis queue, optionally waiting with one progress bar over all of them) and
// `sr3 queue` (the queue's counts and recent failures). The workers are `sr3 worker` (worker.ts).
import { accessSync, constants, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SAMPLERS } from '../sampler.ts';
import { MAX_STEPS } from '../schedule.ts';
import { DEFAULT_SAMPLER, DEFAULT_STEPS } from '../upscale.ts';
import { progress } from './progress.ts';
import { etaArg, integerArg, samplerArg, scheduleArg } from './upscale-args.ts';
import {
  checkRedisUrl,
  DEFAULT_QUEUE,
  enqueueUpscale,
  MAX_INLINE_BYTES,
  queueStatus,
  watchUpscales,
  type UpscaleRequest,
} from './queue.ts';

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg']);

const SUBMIT_HELP = `usage: sr3 submit <files | folders> --redis URL -o <outdir> [options]

Puts one upscaling job per image on a Redis queue for \`sr3 worker\`s (README "Many images, many machines").
Folders contribute their .png/.jpg/.jpeg files (not recursively). Each output is <outdir>/<name>_sr.png. Paths are
made absolute: inputs and outdir must be on storage the workers see at the same paths (or use --send-bytes).
  --redis URL      the Redis server holding the queue, e.g. redis://10.0.0.5:6379
  -o, --out dir    output folder (must exist)
  --queue NAME     queue name (default ${DEFAULT_QUEUE})
  --steps N        sampling steps (default ${DEFAULT_STEPS}); --schedule, --sampler (${SAMPLERS.join(' | ')}), --eta,
                   --seed n (default 0), --no-consistency as for sr3 upscale
  --send-bytes     put each input's bytes in its job (at most ${MAX_INLINE_BYTES / 1024} KiB each) instead of its path, for
                   workers that cannot see the inputs (the output folder must still be theirs to write)
  --attempts N     tries per job for failures that may pass (default 3); a bad input fails at once
  --wait           follow the jobs with one progress bar over all of them, then print a summary (exit status 1
                   when any failed)
  --quiet          no progress bar`;

const QUEUE_HELP = `usage: sr3 queue --redis URL [--queue NAME] [--failures N] [--json]

Shows the queue's jobs waiting, active, done and failed, its workers, and the most recent failures (default 10).`;

/** The image files named by the arguments: files as given, folders' images sorted by name. */
function collectInputs(args: string[]): string[] {
  const files: string[] = [];
  for (const a of args) {
    if (!existsSync(a)) throw new Error(`${a}: no such file or folder`);
    if (statSync(a).isDirectory()) {
      const inDir = readdirSync(a)
        .filter((n) => IMAGE_EXT.has(extname(n).toLowerCase()) && statSync(join(a, n)).isFile())
        .sort();
      if (inDir.length === 0) throw new Error(`${a}: no .png/.jpg/.jpeg files in this folder`);
      files.push(...inDir.map((n) => join(a, n)));
    } else {
      files.push(a);
    }
  }
  return files;
}

export async function submitCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      redis: { type: 'string' },
      out: { type: 'string', short: 'o' },
      queue: { type: 'string' },
      steps: { type: 'string' },
      schedule: { type: 'string' },
      sampler: { type: 'string' },
      eta: { type: 'string' },
      seed: { type: 'string' },
      'no-consistency': { type: 'boolean' },
      'send-bytes': { type: 'boolean' },
      attempts: { type: 'string' },
      wait: { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(SUBMIT_HELP);
    return 0;
  }
  const redis = checkRedisUrl(values.redis);
  if (positionals.length === 0) throw new Error(`no input images\n\n${SUBMIT_HELP}`);
  if (!values.out)
    throw new Error(`-o/--out is required: the folder the workers write the outputs to\n\n${SUBMIT_HELP}`);
  const int = (v: string | undefined, flag: string, min: number) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${flag} must be an integer >= ${min}, got '${v}'`);
    return n;
  };
  const attempts = int(values.attempts, 'attempts', 1);
  // the sampling flags get sr3 upscale's checks now, not in the worker after the job is queued
  const sampler = samplerArg(values.sampler ?? DEFAULT_SAMPLER);
  const steps = values.steps === undefined ? undefined : integerArg(values.steps, 'steps', 2, MAX_STEPS);
  scheduleArg(values.schedule, steps ?? DEFAULT_STEPS, sampler);
  const seed = values.seed === undefined ? undefined : integerArg(values.seed, 'seed', 0, Number.MAX_SAFE_INTEGER);
  const eta = values.eta === undefined ? undefined : etaArg(values.eta, sampler);
  const outDir = resolve(values.out);
  if (!existsSync(outDir) || !statSync(outDir).isDirectory())
    throw new Error(`${values.out}: no such folder (create it first; the workers write there)`);
  try {
    accessSync(outDir, constants.W_OK);
  } catch {
    throw new Error(`${values.out}: cannot write there (no permission)`);
  }

  // Checked here, before anything is queued: files exist and are readable, outputs do not collide, bytes fit.
  const files = collectInputs(positionals);
  const byOutput = new Map<string, string>();
  const requests: UpscaleRequest[] = files.map((f) => {
    try {
      accessSync(f, constants.R_OK);
    } catch {
      throw new Error(`${f}: cannot read it (no permission)`);
    }
    const output = join(outDir, `${basename(f, extname(f))}_sr.png`);
    const other = byOutput.get(output);
    if (other)
      throw new Error(`${other} and ${f} would both be written to ${output}: rename one, or submit them separately`);
    byOutput.set(output, f);
    return {
      input: values['send-bytes'] ? new Uint8Array(readFileSync(f)) : resolve(f),
      name: f,
      output,
      steps,
      seed,
      eta,
      schedule: values.schedule,
      sampler: values.sampler,
      consistency: values['no-consistency'] ? false : undefined,
    };
  });
  const queue = values.queue ?? DEFAULT_QUEUE;
  const ids = await enqueueUpscale(requests, { redis, queue, attempts });
  console.error(`queued ${ids.length} job${ids.length > 1 ? 's' : ''} on '${queue}' at ${redis}`);
  if (!values.wait) {
    console.error(`follow them with: sr3 queue --redis ${redis}${values.queue ? ` --queue ${queue}` : ''}`);
    return 0;
  }

  const t0 = performance.now();
  const bar = progress(`${ids.length} images`, 'steps', process.stderr, !!values.quiet);
  const state = await watchUpscales(ids, { redis, queue, onUpdate: (s) => bar.update(s.stepsDone, s.stepsTotal) });
  const secs = (performance.now() - t0) / 1000;
  bar.done();
  const rate = state.completed / (secs / 60);
  console.error(
    `${state.completed} done, ${state.failed} failed, of ${state.total}, in ${secs.toFixed(1)} s (${rate.toFixed(1)} images/min)`,
  );
  for (const f of state.failures)
    console.error(`  failed: ${f.reason.includes(f.input) ? f.reason : `${f.input}: ${f.reason}`}`);
  return state.failed > 0 ? 1 : 0;
}

export async function queueCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      redis: { type: 'string' },
      queue: { type: 'string' },
      failures: { type: 'string', default: '10' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(QUEUE_HELP);
    return 0;
  }
  const redis = checkRedisUrl(values.redis);
  const n = Number(values.failures);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--failures must be an integer >= 0, got '${values.failures}'`);
  const queue = values.queue ?? DEFAULT_QUEUE;
  const s = await queueStatus({ redis, queue, failures: n });
  if (values.json) {
    console.log(JSON.stringify(s, null, 2));
    return 0;
  }
  const c = s.counts;
  console.log(
    `queue '${queue}' at ${redis}: ${c.waiting} waiting, ${c.active} active, ${c.delayed} delayed (to be retried), ${c.completed} done, ${c.failed} failed; ${s.workers} worker${s.workers === 1 ? '' : 's'} connected`,
  );
  if (s.failures.length > 0 && n > 0) {
    console.log(`most recent failures:`);
    for (const f of s.failures) {
      const when = f.finishedOn ? new Date(f.finishedOn).toISOString() : '';
      console.log(
        `  job ${f.id} ${when} ${f.reason.includes(f.input) ? f.reason : `${f.input}: ${f.reason}`} (${f.attempts} tr${f.attempts === 1 ? 'y' : 'ies'})`,
      );
    }
  }
  return 0;
}
